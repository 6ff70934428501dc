"""The scheme registry: a destination URL's scheme picks its adapter."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from fileferry.errors import ConfigError

if TYPE_CHECKING:
    from fileferry.config import DestinationSettings, TransferSettings
    from fileferry.endpoints.base import Destination

__all__ = ["connect_destination"]

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
