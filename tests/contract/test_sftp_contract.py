"""The destination contract against OpenSSH's sshd: a shell account and an SFTP-only one."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from fileferry.config import parse_settings
from fileferry.endpoints.base import Destination
from fileferry.endpoints.registry import connect_destination
from tests.conftest import sftp_destination
from tests.contract.suite import DestinationContract
from tests.servers.sshd import SshdServer


@pytest.fixture(params=["shell", "sftp-only"])
async def destination(request: pytest.FixtureRequest, sshd: SshdServer,
                      remote_dir: Path) -> AsyncIterator[Destination]:
    sftp_only = request.param == "sftp-only"
    settings = parse_settings({"destinations": {
        "t": sftp_destination(sshd, remote_dir, sftp_only=sftp_only)}})
    dest = await connect_destination("t", settings.destinations["t"], settings.transfer)
    assert dest.root == str(remote_dir)
    assert bool(dest.capabilities.hashes) is not sftp_only
    yield dest
    await dest.close()


class TestSftpDestination(DestinationContract):
    pass
