"""The destination contract against real FTP servers: ProFTPD (FTPS and plain) and pyftpdlib."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from fileferry.config import parse_settings
from fileferry.endpoints.base import Destination
from fileferry.endpoints.registry import connect_destination
from tests.conftest import ftp_target
from tests.contract.suite import DestinationContract


@pytest.fixture(params=["proftpd", "proftpd-plain", "pyftpd"])
async def destination(request: pytest.FixtureRequest) -> AsyncIterator[Destination]:
    dest, _ = ftp_target(request, request.param)
    settings = parse_settings({"destinations": {"t": dest}})
    connected = await connect_destination("t", settings.destinations["t"], settings.transfer)
    assert bool(connected.capabilities.hashes) is (request.param != "pyftpd")
    yield connected
    await connected.close()


class TestFtpDestination(DestinationContract):
    pass
