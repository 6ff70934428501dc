"""SFTP host keys: pinning (known_hosts or a fingerprint), fetching, and what a refusal says.

Split from ``sftp.py``; ``sftp`` re-exports the public functions.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import asyncssh

from fileferry.errors import (
    ConfigError,
    EndpointUnavailable,
    FileFerryError,
    HostKeyMismatch,
    HostKeyUnknown,
)

if TYPE_CHECKING:
    from fileferry.config import DestinationSettings

__all__ = ["PinningClient", "Seen", "client_keys", "fetch_host_key", "host_key_error",
           "known_hosts_entries", "pin_host_key", "pinned_keys", "where"]


@dataclass
class Seen:
    """The host key the server offered, kept for the error message."""

    key: Any = None
    fingerprint: str | None = None


class PinningClient(asyncssh.SSHClient):
    """Accepts a key not in known_hosts only when it has the pinned fingerprint."""

    def __init__(self, fingerprint: str | None) -> None:
        self.fingerprint = fingerprint
        self.seen = Seen()

    def validate_host_public_key(self, host: str, addr: str, port: int, key: Any) -> bool:
        self.seen.key = key
        self.seen.fingerprint = key.get_fingerprint("sha256")
        return self.fingerprint is not None and self.seen.fingerprint == self.fingerprint


def known_hosts_entries(path: Path, host: str, port: int) -> list[Any]:
    if not path.exists():
        return []
    try:
        matched = asyncssh.match_known_hosts(str(path), host, "", port)
    except (OSError, ValueError):
        return []
    return list(matched[0]) + list(matched[1])


def where(settings: DestinationSettings) -> str:
    url = settings.parsed
    return f"{url.host}:{url.port}"


async def fetch_host_key(settings: DestinationSettings) -> Any:
    """The host key the server presents (no authentication, nothing trusted)."""
    url = settings.parsed
    try:
        key = await asyncio.wait_for(asyncssh.get_server_host_key(url.host, url.port),
                                     settings.connect_timeout)
    except Exception as exc:
        from fileferry.endpoints.sftp import map_sftp_error  # the module that imports this one

        raise map_sftp_error(exc, f"fetching the host key of {where(settings)}") from exc
    if key is None:
        raise EndpointUnavailable(f"{where(settings)} presented no host key")
    return key


def pin_host_key(settings: DestinationSettings, key: Any, replace: bool = False) -> Path:
    """Add ``key`` for the destination's host to its known_hosts file.

    With ``replace``, lines already naming exactly this host are dropped first.
    """
    url = settings.parsed
    host = url.host if url.port == 22 else f"[{url.host}]:{url.port}"
    path = settings.known_hosts_path
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True) if path.exists() else []
    if replace:
        lines = [ln for ln in lines if not _names_host(ln, url.host, url.port)]
    lines.append(f"{host} {key.export_public_key('openssh').decode().strip()}\n")
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(lines), encoding="utf-8")
    tmp.chmod(0o600)
    tmp.replace(path)
    return path


def _names_host(line: str, host: str, port: int) -> bool:
    """Whether one known_hosts line applies to host:port (hashed names included)."""
    if not line.strip() or line.lstrip().startswith("#"):
        return False
    try:
        keys, cas, *_ = asyncssh.match_known_hosts(line.encode(), host, "", port)
    except (ValueError, asyncssh.KeyImportError):
        return False
    return bool(keys or cas)


def pinned_keys(settings: DestinationSettings) -> list[Any]:
    url = settings.parsed
    return known_hosts_entries(settings.known_hosts_path, url.host, url.port)


def host_key_error(name: str, settings: DestinationSettings, seen: Seen,
                   had_entries: bool) -> FileFerryError:
    offered = seen.fingerprint or "(none offered)"
    address = where(settings)
    if settings.host_key_fingerprint:
        return HostKeyMismatch(
            f"host key for {address} ({offered}) does not match the pinned fingerprint "
            f"{settings.host_key_fingerprint}; if the partner rotated it, confirm the new "
            f"fingerprint with them and update destinations.{name}.host_key_fingerprint")
    if had_entries:
        return HostKeyMismatch(
            f"host key for {address} does not match the pinned key in "
            f"{settings.known_hosts_path} (server offered {offered}); if the partner rotated "
            f"it, confirm with them, then run `fileferry hostkey {name} --pin --replace`")
    return HostKeyUnknown(
        f"no pinned host key for {address} in {settings.known_hosts_path} (server offered "
        f"{offered}); confirm the fingerprint with the partner, then run "
        f"`fileferry hostkey {name} --pin` or set destinations.{name}.host_key_fingerprint")


def client_keys(settings: DestinationSettings) -> list[Any]:
    """The configured key: text from a secret (identity/secrets.py) or a key file."""
    if settings.private_key is not None:
        try:
            return [asyncssh.import_private_key(settings.private_key.get_secret_value())]
        except (asyncssh.KeyImportError, ValueError):
            # never echo the key: name where it came from instead
            raise ConfigError("the private_key in the destination's secret is not an "
                              "unencrypted OpenSSH or PEM private key") from None
    return [str(settings.private_key_file)] if settings.private_key_file else []
