"""A pure-Python SFTP server (asyncssh) with a generated host key, for the demo.

It serves one directory as ``/`` to one user with a password, and has no
shell: like many partners' SFTP-only accounts, so files are verified by
reading them back.
"""

from __future__ import annotations

import hmac
import os
from pathlib import Path
from typing import Any

import asyncssh

__all__ = ["SandboxSftpServer"]


class _Auth(asyncssh.SSHServer):
    def __init__(self, username: str, password: str) -> None:
        self._username = username
        self._password = password

    def begin_auth(self, username: str) -> bool:
        return True

    def password_auth_supported(self) -> bool:
        return True

    def validate_password(self, username: str, password: str) -> bool:
        return username == self._username and hmac.compare_digest(password, self._password)


class SandboxSftpServer:
    """``await SandboxSftpServer(root, user, password).start()``; ``close()`` when done."""

    def __init__(self, root: Path, username: str, password: str) -> None:
        self.root = root
        self.username = username
        self._password = password
        self.host_key = asyncssh.generate_private_key("ssh-ed25519")
        self._server: Any = None
        self.port = 0

    @property
    def fingerprint(self) -> str:
        return str(self.host_key.get_fingerprint("sha256"))

    def known_hosts_line(self) -> str:
        public = self.host_key.export_public_key("openssh").decode().strip()
        return f"[127.0.0.1]:{self.port} {public}\n"

    async def start(self) -> SandboxSftpServer:
        self.root.mkdir(parents=True, exist_ok=True)
        root = os.fsencode(self.root)
        self._server = await asyncssh.listen(
            "127.0.0.1", 0,
            server_host_keys=[self.host_key],
            server_factory=lambda: _Auth(self.username, self._password),
            sftp_factory=lambda chan: asyncssh.SFTPServer(chan, chroot=root),
            allow_scp=False,
        )
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
