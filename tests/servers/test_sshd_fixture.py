"""Self-test for the real-sshd test helper in ``tests/servers/sshd.py``."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import asyncssh
import pytest

from tests.servers.sshd import SshdServer

# Uses the session's server (tests/conftest.py): a second start would give the
# shared test user a new password under the session's feet.


def _opts(server: SshdServer, **overrides: Any) -> dict[str, Any]:
    """asyncssh.connect() options: key login, host key pinned via known_hosts_file."""
    options: dict[str, Any] = {
        "username": server.username,
        "known_hosts": str(server.known_hosts_file),
        "client_keys": [str(server.client_key_file)],
    }
    return options | overrides


@pytest.mark.asyncio
async def test_sshd_helper(sshd: SshdServer, remote_dir: Path) -> None:
    assert sshd.host == "127.0.0.1"
    assert sshd.shell_port != sshd.sftp_only_port
    assert sshd.host_key_fingerprint.startswith("SHA256:")
    assert list(remote_dir.iterdir()) == []
    data = b"hello fileferry\n" * 1000
    digest = hashlib.md5(data).hexdigest()
    host = sshd.host

    # SFTP upload into root works on both ports; "." resolves to the home directory.
    for port, name in ((sshd.shell_port, "shell.bin"), (sshd.sftp_only_port, "sftp-only.bin")):
        async with (
            asyncssh.connect(host, port=port, **_opts(sshd)) as conn,
            conn.start_sftp_client() as sftp,
        ):
            async with sftp.open(str(remote_dir / name), "wb") as f:
                await f.write(data)
            assert await sftp.realpath(".") == str(sshd.home)
        assert (remote_dir / name).read_bytes() == data

    # exec on the shell port runs real commands.
    async with asyncssh.connect(host, port=sshd.shell_port, **_opts(sshd)) as conn:
        result = await conn.run(f"md5sum {remote_dir / 'shell.bin'}", check=True, timeout=10)
        assert str(result.stdout).split()[0] == digest
        result = await conn.run(f"sha256sum {remote_dir / 'shell.bin'}", check=True, timeout=10)
        assert str(result.stdout).split()[0] == hashlib.sha256(data).hexdigest()

    # exec on the SFTP-only port is forced into internal-sftp: no command output, no hang.
    async with asyncssh.connect(host, port=sshd.sftp_only_port, **_opts(sshd)) as conn:
        result = await conn.run(f"md5sum {remote_dir / 'sftp-only.bin'}", input="", timeout=10)
        assert digest not in str(result.stdout)

    if sshd.password is not None:
        pw_opts = _opts(sshd, client_keys=None, password=sshd.password)
        async with asyncssh.connect(host, port=sshd.shell_port, **pw_opts) as conn:
            result = await conn.run("id -un", check=True, timeout=10)
            assert str(result.stdout).strip() == sshd.username
        with pytest.raises(asyncssh.PermissionDenied):
            bad_opts = _opts(sshd, client_keys=None, password="wrong-password")
            await asyncssh.connect(host, port=sshd.shell_port, **bad_opts)
