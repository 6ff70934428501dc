"""``fileferry check``: connect, log in, prove the root is writable, list working checks."""

from __future__ import annotations

import secrets
import time
from typing import TYPE_CHECKING, Any

from fileferry.endpoints.registry import connect_destination
from fileferry.errors import FileFerryError, PermissionDenied

if TYPE_CHECKING:
    from fileferry.config import DestinationSettings, TransferSettings

__all__ = ["probe_destination"]


async def probe_destination(name: str, settings: DestinationSettings,
                            transfer: TransferSettings) -> dict[str, Any]:
    """What ``check`` reports. The probe file it writes is removed before returning."""
    started = time.monotonic()
    dest = await connect_destination(name, settings, transfer)
    try:
        probe = f"{dest.root.rstrip('/')}/.fileferry-check-{secrets.token_hex(4)}"
        try:
            writer = await dest.open_write(probe)
            await writer.write(b"fileferry check\n")
            await writer.commit()
        except FileFerryError as exc:
            raise PermissionDenied(f"cannot write in {dest.root} on {name} (does it exist, and "
                                   f"may this account write there?): {exc}") from exc
        finally:
            await dest.remove(probe)
        methods = [f"server-{h}" for h in ("md5", "sha256") if h in dest.capabilities.hashes]
        if dest.capabilities.supports_readback:
            methods.append("readback-sha256")
        methods += ["size", "none"]
        caps = dest.capabilities
        return {
            "destination": name,
            "url": str(settings.parsed),
            "root": dest.root,
            "writable": True,
            "verify": settings.verify,
            "verification_methods": methods,
            "atomic_rename": caps.supports_atomic_rename,
            "offset_writes": caps.supports_offset_writes,
            "seconds": round(time.monotonic() - started, 3),
        }
    finally:
        await dest.close()
