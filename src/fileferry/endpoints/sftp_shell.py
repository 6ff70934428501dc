"""The server's own tools over SSH: probing what the account can run, and the digest shell.

Split from ``sftp.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import shlex
from collections import deque
from typing import Any

from fileferry.endpoints.base import HashName

__all__ = ["PROBE", "SHELL_START_TIMEOUT", "DigestShell", "ShellBroken", "probe_tools"]

PROBE = ("md5sum --version >/dev/null 2>&1 && echo md5; "
         "sha256sum --version >/dev/null 2>&1 && echo sha256; "
         "dd --version 2>/dev/null | grep -q coreutils && echo dd")
SHELL_START_TIMEOUT = 10


class ShellBroken(Exception):
    """The persistent digest shell cannot be trusted any more (the request is retried)."""


class DigestShell:
    """A long-lived ``sh`` on one connection that runs ``md5sum``/``sha256sum`` on request.

    Each digest through a new exec costs a channel, a session process and a
    shell on the server (~10 ms per file). This shell takes commands as they
    come (several files' digests are pipelined, not queued behind a lock);
    each is followed by ``echo TOKEN $?`` with a fresh random token, and one
    reader matches the answers, in order, to their requests. A request
    cancelled half-way is harmless: its answer is read and dropped. If the
    shell ends or misbehaves, every pending request fails with ``ShellBroken``
    (and is retried by an exec).
    """

    def __init__(self, process: Any) -> None:
        self._process = process
        self._pending: deque[tuple[str, asyncio.Future[tuple[int, str]]]] = deque()
        self._reader: asyncio.Task[None] | None = None
        self.broken = False

    @classmethod
    async def start(cls, conn: Any) -> DigestShell:
        process = await conn.create_process("exec sh", encoding="utf-8", errors="replace")
        shell = cls(process)
        shell._reader = asyncio.ensure_future(shell._read())
        # Whatever the login scripts print comes before this answer: it is skipped.
        try:
            await asyncio.wait_for(shell._run("true"), SHELL_START_TIMEOUT)
        except BaseException:
            shell.close()
            raise
        return shell

    async def digest(self, path: str, algorithm: HashName) -> tuple[int, str]:
        """(exit status, output) of ``ALGsum -- PATH``; raises ``ShellBroken``."""
        return await self._run(f"{algorithm}sum -- {shlex.quote(path)}")

    async def _run(self, command: str) -> tuple[int, str]:
        if self.broken:
            raise ShellBroken("closed")
        token = f"__fileferry_{secrets.token_hex(8)}"
        answer: asyncio.Future[tuple[int, str]] = asyncio.get_running_loop().create_future()
        self._pending.append((token, answer))
        try:
            self._process.stdin.write(f"{command} 2>&1; echo \"{token} $?\"\n")
        except Exception as exc:
            self.close()
            raise ShellBroken(repr(exc)) from exc
        return await answer

    async def _read(self) -> None:
        lines: list[str] = []
        try:
            while True:
                line = await self._process.stdout.readline()
                if not line:
                    raise ShellBroken("the shell ended")
                token, answer = self._pending[0] if self._pending else ("", None)
                if answer is None or not line.startswith(token + " "):
                    lines.append(line)
                    continue
                self._pending.popleft()
                if not answer.done():
                    answer.set_result((int(line.split()[1]), "".join(lines)))
                lines = []
        except BaseException as exc:
            self.broken = True
            error = exc if isinstance(exc, ShellBroken) else ShellBroken(repr(exc))
            for _, answer in self._pending:
                if not answer.done():
                    answer.set_exception(error)
            self._pending.clear()
            with contextlib.suppress(Exception):
                self._process.close()
            if not isinstance(exc, Exception):
                raise

    def close(self) -> None:
        self.broken = True
        if self._reader is not None and not self._reader.done():
            self._reader.cancel()
        with contextlib.suppress(Exception):
            self._process.close()


async def probe_tools(conn: Any) -> set[str]:
    """Which of md5sum, sha256sum and GNU dd the account can run (none if SFTP-only)."""
    try:
        result = await conn.run(PROBE, input="", check=False, timeout=10)
    except Exception:
        return set()
    return set(str(result.stdout or "").split()) & {"md5", "sha256", "dd"}
