"""The scheme registry: a destination URL's scheme picks its adapter.

``open_destination`` also shares connected destinations: transfers to the
same destination in one process reuse its pooled connections, and
``close_idle_destinations`` logs them out when nobody uses them.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from fileferry.errors import ConfigError
from fileferry.transfer.retry import RetryPolicy

if TYPE_CHECKING:
    from fileferry.config import DestinationSettings, TransferSettings
    from fileferry.endpoints.base import Destination

__all__ = ["close_idle_destinations", "connect_destination", "open_destination"]

Connector = Callable[[str, "DestinationSettings", "TransferSettings"], Awaitable["Destination"]]


async def _sftp(name: str, settings: DestinationSettings,
                transfer: TransferSettings) -> Destination:
    from fileferry.endpoints.sftp import SftpDestination

    return await SftpDestination.connect(name, settings, compression=transfer.enable_compression)


async def _ftp(name: str, settings: DestinationSettings,
               transfer: TransferSettings) -> Destination:
    from fileferry.endpoints.ftp import FtpDestination

    return await FtpDestination.connect(name, settings,
                                        sessions=transfer.max_parallel_threads + 1,
                                        compression=transfer.enable_compression)


_REGISTRY: dict[str, Connector] = {"sftp": _sftp, "ftps": _ftp, "ftp": _ftp}


async def connect_destination(name: str, settings: DestinationSettings,
                              transfer: TransferSettings) -> Destination:
    """Connect and log in to a configured destination."""
    scheme = settings.parsed.scheme
    try:
        connector = _REGISTRY[scheme]
    except KeyError:
        raise ConfigError(f"destinations.{name}.url: no adapter for {scheme}://") from None
    return await connector(name, settings, transfer)


@dataclass
class _Lease:
    destination: Destination
    users: int = 0


_SHARED: dict[tuple[int, str], _Lease] = {}


def _key(name: str, settings: DestinationSettings, transfer: TransferSettings) -> tuple[int, str]:
    secret = "\0".join(value.get_secret_value() if value else ""
                       for value in (settings.password, settings.private_key))
    text = "\0".join((name, settings.model_dump_json(), secret,
                      str(transfer.enable_compression), str(transfer.max_parallel_threads)))
    return id(asyncio.get_running_loop()), hashlib.sha256(text.encode()).hexdigest()


@contextlib.asynccontextmanager
async def open_destination(name: str, settings: DestinationSettings,
                           transfer: TransferSettings,
                           retry: RetryPolicy | None = None) -> AsyncIterator[Destination]:
    """A connected destination, shared with other users of the same settings.

    Connecting is retried by ``retry`` when the error is retryable (the
    server is unreachable); refusals (host key, credentials) fail at once.
    """
    key = _key(name, settings, transfer)
    lease = _SHARED.get(key)
    if lease is None:
        policy = retry or RetryPolicy.for_destination(settings)
        async for attempt in policy.retrying():
            with attempt:
                connected = await connect_destination(name, settings, transfer)
        lease = _SHARED.setdefault(key, _Lease(connected))
        if lease.destination is not connected:
            await connected.close()
    lease.users += 1
    try:
        yield lease.destination
    finally:
        lease.users -= 1


async def close_idle_destinations() -> None:
    """Log out of every shared destination of this event loop that nobody is using."""
    loop = id(asyncio.get_running_loop())
    for key, lease in list(_SHARED.items()):
        if key[0] == loop and lease.users == 0:
            del _SHARED[key]
            await lease.destination.close()
