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

__all__ = ["FOLLOW_STEP", "PROBE", "SHELL_START_TIMEOUT", "DigestShell", "Follower", "ShellBroken",
           "probe_tools"]

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


FOLLOW_STEP = 16 * 1024 * 1024
"""The follower is told about confirmed bytes in steps of this (one ``dd`` each)."""


class Follower:
    """The server's digest of a file computed while the file is being written.

    An exec runs ``while read off len; do dd …; done | md5sum`` on the server:
    each line names a range the SFTP server has already confirmed (in order,
    from 0), ``dd`` reads it from the file, and ``md5sum`` hashes the
    concatenation. When the writer has fed the last range and closed the
    input, the digest is ready moments later instead of after a second read
    of the whole file, so the check overlaps the transfer. Its strength is
    that of ``md5sum`` after the fact: both read what the server stored. If
    ``dd`` fails or a range is missing, ``result`` says None and the caller
    runs ``md5sum`` as usual.
    """

    def __init__(self, process: Any, algorithm: HashName) -> None:
        self._process = process
        self.algorithm = algorithm
        self.fed = 0
        self._closed = False

    @classmethod
    async def start(cls, conn: Any, path: str, algorithm: HashName) -> Follower:
        quoted = shlex.quote(path)
        command = ("while read -r off len; do dd if=" + quoted + " iflag=skip_bytes,count_bytes"
                   ' skip="$off" count="$len" bs=1M status=none || exit 1; done'
                   " && echo __fileferry_ok >&2; } | " + f"{algorithm}sum")
        process = await conn.create_process("{ " + command, encoding="utf-8",
                                            errors="replace")
        return cls(process, algorithm)

    def feed(self, upto: int) -> None:
        """Hash the file up to ``upto`` (bytes confirmed in order), if that is further."""
        if self._closed or upto <= self.fed:
            return
        try:
            self._process.stdin.write(f"{self.fed} {upto - self.fed}\n")
        except Exception:  # the exec is gone: result() will say None
            self._closed = True
            return
        self.fed = upto

    async def result(self, size: int) -> str | None:
        """The digest of bytes [0, ``size``), or None if it cannot be trusted."""
        if self._closed or self.fed != size:
            self.abort()
            return None
        self._closed = True
        try:
            self._process.stdin.write_eof()
            out, err = await asyncio.gather(self._process.stdout.read(),
                                            self._process.stderr.read())
            await self._process.wait_closed()
        except Exception:
            return None
        if "__fileferry_ok" not in err or not out.split():
            return None
        return str(out.split()[0]).lstrip("\\").lower()

    def abort(self) -> None:
        self._closed = True
        with contextlib.suppress(Exception):
            self._process.close()
