"""The SFTP write path: pipelined writes at offsets, striped over several connections.

Why not ``SFTPClientFile.write(chunk)`` per chunk: asyncssh turns one write
into parallel requests but returns only when every one is acknowledged, so
the pipeline drains at the end of each chunk, and one SSH channel carries at
most its window (2 MiB with OpenSSH) per round trip: ~40 MB/s at 50 ms.
``SftpWriter`` keeps requests in flight across chunk boundaries and, for a
large file, spreads them over up to ``STRIPES`` connections ("lanes"), each
with its own handle on the same file and its own window. Extra lanes are
opened in the background while the first one already carries data; a lane
that cannot be opened is simply not used.

``acknowledged`` is what resuming relies on: the bytes from the writer's
start offset that the server has confirmed *in order*. Pieces finish out of
order (across lanes), so a failure can leave a hole after that point, never
before it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import posixpath
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import asyncssh
from asyncssh.constants import MSG_IGNORE

from fileferry.endpoints.sftp_shell import FOLLOW_STEP
from fileferry.errors import FileFerryError

__all__ = ["COALESCE_MAX", "IN_FLIGHT", "PIECE", "STRIPED_IN_FLIGHT", "STRIPES", "STRIPE_MIN",
           "Lane", "SftpWriter", "coalesce_sends", "drop_ignore_padding", "makedirs"]

log = logging.getLogger(__name__)

PIECE = 256 * 1024
"""One write request at most (less if the server's limits@openssh.com says so)."""
IN_FLIGHT = 1024 * 1024
"""Bytes in flight on a file's only lane. A cut connection loses what is in flight, so this
is kept small; on loopback it is plenty, at 50 ms it carries ~20 MB/s."""
STRIPED_IN_FLIGHT = 2 * 1024 * 1024
"""Per lane of a striped (large) file: OpenSSH's channel window, the most that helps."""
STRIPES = 4
STRIPE_MIN = 64 * 1024 * 1024
"""Files from this size are striped over up to ``STRIPES`` connections."""


class LaneSession(Protocol):
    """What a writer needs of a pooled connection: its SFTP client and a use count."""

    sftp: Any
    active: int


@dataclass
class Lane:
    session: LaneSession
    handle: Any
    in_flight: int = 0


Fail = Callable[[LaneSession, BaseException, str], FileFerryError]
OpenLane = Callable[[], Awaitable["Lane | None"]]


class SftpWriter:
    """A ``Writer`` over one or more lanes; ``write`` returns once the data is queued.

    ``open_lane`` (striped files only) is asked, in the background, for up to
    ``stripes - 1`` more lanes on other, idle connections. ``fail`` maps an error
    (and drops a broken connection from the pool). ``release`` is called once
    per lane when the writer is done with it.
    """

    def __init__(self, first: Lane, path: str, offset: int, fail: Fail,
                 release: Callable[[LaneSession], None], open_lane: OpenLane | None = None,
                 stripes: int = 1, follower: Any = None,
                 done: Callable[[Any, int], None] | None = None) -> None:
        self._lanes = [first]
        self._path = path
        self._fail = fail
        self._release_session = release
        self.offset = offset
        self.acknowledged = 0
        self._start = offset
        self._pending: deque[tuple[int, Lane, int, asyncio.Future[Any]]] = deque()
        self._error: FileFerryError | None = None
        self._closed = False
        self._follower = follower  # told about confirmed bytes (``sftp_shell.Follower``)
        self._done = done  # handed the follower and the size once every byte is stored
        limit = getattr(first.handle, "write_len", 0) or PIECE
        self._piece = min(PIECE, limit)
        self._opening: asyncio.Task[None] | None = None
        if open_lane is not None and stripes > 1:
            self._opening = asyncio.ensure_future(self._open_lanes(open_lane, stripes - 1))

    async def _open_lanes(self, open_lane: OpenLane, count: int) -> None:
        for _ in range(count):
            try:
                lane = await open_lane()
            except FileFerryError as exc:  # fewer lanes, not a failure
                log.debug("no extra lane for %s: %s", self._path, exc)
                return
            if lane is None:
                return
            if self._closed:
                await _close_quietly(lane.handle)
                self._release_session(lane.session)
                return
            self._lanes.append(lane)

    async def write(self, data: bytes) -> None:
        """Queue ``data`` at the current offset; raises a failure of an earlier piece."""
        self._raise_if_failed()
        view = memoryview(data)
        for start in range(0, len(view), self._piece):
            piece = view[start:start + self._piece]
            lane = min(self._lanes, key=lambda item: item.in_flight)
            # A lone lane keeps little in flight (a cut loses it); striped ones fill windows.
            cap = STRIPED_IN_FLIGHT if len(self._lanes) > 1 else IN_FLIGHT
            while lane.in_flight >= cap:
                await self._settle_oldest()
                lane = min(self._lanes, key=lambda item: item.in_flight)
            future = asyncio.ensure_future(lane.handle.write(piece, self.offset))
            self.offset += len(piece)
            lane.in_flight += len(piece)
            self._pending.append((self.offset, lane, len(piece), future))
        self._advance()
        self._raise_if_failed()

    def _advance(self) -> None:
        """Count finished pieces at the head as acknowledged (in order only)."""
        while self._pending and self._pending[0][3].done():
            self._settled(*self._pending.popleft())

    def _settled(self, end: int, lane: Lane, size: int, future: asyncio.Future[Any]) -> None:
        lane.in_flight -= size
        if future.cancelled():
            return
        exc = future.exception()
        if exc is not None:
            if self._error is None:
                self._error = self._fail(lane.session, exc, f"writing {self._path}")
                self._error.__cause__ = exc
            return
        if self._error is None:
            self.acknowledged = end - self._start
            if self._follower is not None and end - self._follower.fed >= FOLLOW_STEP:
                self._follower.feed(end)

    async def _settle_oldest(self) -> None:
        future = self._pending[0][3]  # stays pending (abort cancels it) if we are cancelled
        with contextlib.suppress(Exception):
            await asyncio.shield(future)
        self._settled(*self._pending.popleft())
        self._raise_if_failed()

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise self._error

    async def commit(self) -> None:
        """Wait for every piece, then close every lane's handle; the bytes are stored."""
        try:
            while self._pending:
                await self._settle_oldest()
        except BaseException:
            await self.abort()
            raise
        await self._stop_opening()
        errors = []
        for lane in self._lanes:
            try:
                await lane.handle.close()
            except Exception as exc:
                errors.append(self._fail(lane.session, exc, f"closing {self._path}"))
        self._release_all()
        follower, self._follower = self._follower, None
        if errors:
            if follower is not None:
                follower.abort()
            raise errors[0]
        if follower is not None and self._done is not None:
            follower.feed(self.offset)
            self._done(follower, self.offset)

    async def abort(self) -> None:
        """Cancel what is in flight and close the handles; errors are ignored."""
        pending, self._pending = list(self._pending), deque()
        for *_, future in pending:
            future.cancel()
        await asyncio.gather(*(f for *_, f in pending), return_exceptions=True)
        await self._stop_opening()
        for lane in self._lanes:
            await _close_quietly(lane.handle)
        self._release_all()
        if self._follower is not None:
            self._follower.abort()
            self._follower = None

    async def _stop_opening(self) -> None:
        self._closed = True
        if self._opening is not None:
            self._opening.cancel()
            await asyncio.gather(self._opening, return_exceptions=True)
            self._opening = None

    def _release_all(self) -> None:
        lanes, self._lanes = self._lanes, []
        for lane in lanes:
            self._release_session(lane.session)


async def _close_quietly(handle: Any) -> None:
    with contextlib.suppress(Exception):
        await asyncio.wait_for(handle.close(), 5)


def drop_ignore_padding(conn: Any) -> None:
    """Stop asyncssh from sending an empty SSH_MSG_IGNORE before every packet.

    asyncssh inserts one ahead of each packet once keys are in use, a
    countermeasure for CBC-mode ciphers (predictable IVs). FileFerry offers
    only AES-GCM, ChaCha20-Poly1305 and AES-CTR, which do not need it, and
    the extra packet costs an encryption and a ``send`` each on the client
    and a decryption on the server: a sixth of the CPU of a bulk upload.
    Packets other than empty IGNOREs pass unchanged; if asyncssh's internals
    look different from what this expects, nothing is changed.
    """
    cipher = str(conn.get_extra_info("send_cipher") or "")
    send = getattr(conn, "send_packet", None)
    if send is None or "cbc" in cipher:
        return
    empty = b"\0\0\0\0"  # String(b""): a zero length

    def send_packet(pkttype: int, *args: bytes, **kwargs: Any) -> None:
        if pkttype == MSG_IGNORE and args == (empty,):
            return
        send(pkttype, *args, **kwargs)

    conn.send_packet = send_packet


COALESCE_MAX = 512 * 1024
"""Bytes of packets gathered before they are sent at once, whatever the loop does."""


def coalesce_sends(conn: Any) -> None:
    """Send the packets one turn of the event loop produces in one ``send``, not one each.

    asyncssh writes every SSH packet to the socket on its own: a small file
    (open, write, close, rename, a digest, with their replies) costs a dozen
    ``send`` calls, each running the kernel's TCP path (on loopback, the
    receiver's too), and with many files in flight that was a quarter of the
    client's time. Gathering them until the loop's next turn (or
    ``COALESCE_MAX`` bytes) keeps their order and adds no waiting: the
    packets go out before the loop looks for anything else to do.
    """
    transport = getattr(conn, "_transport", None)
    if transport is None or not callable(getattr(conn, "_send", None)):
        return
    loop = asyncio.get_running_loop()
    pending: list[bytes] = []
    size = 0

    def flush() -> None:
        nonlocal size
        if not pending:
            return
        data = pending[0] if len(pending) == 1 else b"".join(pending)
        pending.clear()
        size = 0
        if not transport.is_closing():
            with contextlib.suppress(ConnectionError):
                transport.write(data)

    def send(data: bytes) -> None:
        nonlocal size
        if not pending:
            loop.call_soon(flush)
        pending.append(data)
        size += len(data)
        if size >= COALESCE_MAX:
            flush()

    conn._send = send


async def makedirs(sftp: Any, path: str) -> None:
    """``mkdir -p`` in as few round trips as possible (1 when the parent exists).

    asyncssh's ``makedirs`` stats every component from the root down, one
    round trip each. This tries the directory itself first and only walks up
    when its parent is missing; an existing directory is fine, an existing
    file is not.
    """
    try:
        await sftp.mkdir(path)
        return
    except asyncssh.SFTPNoSuchFile:
        parent = posixpath.dirname(path.rstrip("/"))
        if not parent or parent == path:
            raise
        await makedirs(sftp, parent)
    except asyncssh.SFTPError:
        if await sftp.isdir(path):
            return
        raise
    try:
        await sftp.mkdir(path)
    except asyncssh.SFTPError:
        if not await sftp.isdir(path):  # made meanwhile by someone else: fine
            raise
