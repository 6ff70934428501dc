"""Test helper: a fault-injecting TCP proxy on 127.0.0.1 (background thread, own asyncio loop).

``cut_after(n)`` resets (RST) every open connection once exactly ``n`` more client->server
bytes have been forwarded; ``block()`` makes the server "disappear" until ``unblock()``.
With ``ftp=True``, ``227``/``229`` replies on plain-FTP control connections are rewritten to
one-shot data listeners of the proxy, so data connections are proxied (counted, cut) too.
Active mode (PORT/EPRT) and FTPS control connections are not supported.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import struct
import threading
from typing import Any

HOST = "127.0.0.1"
BUFSIZE = 65536  # one read: the most a pump holds at a time
_PASV = re.compile(rb"^(227 .*?)(\d+),(\d+),(\d+),(\d+),(\d+),(\d+)")
_EPSV = re.compile(rb"^(229 .*?\((.)\2\2)(\d+)(\2\))")
Task = asyncio.Task[None]


class _Conn:
    """One proxied connection: its sockets and the task that serves it."""

    def __init__(self, client: socket.socket) -> None:
        self.socks, self.aborted = [client], False
        self.task: Task | None = None

    def cut(self) -> None:
        self.aborted = True
        if self.task is not None:
            self.task.cancel()


def _reset_close(sock: socket.socket) -> None:
    """Close ``sock`` abruptly: with SO_LINGER 0 the kernel sends RST instead of FIN."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


async def _writable(sock: socket.socket) -> None:
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[None] = loop.create_future()
    loop.add_writer(fd := sock.fileno(), lambda: None if fut.done() else fut.set_result(None))
    try:
        await fut
    finally:
        loop.remove_writer(fd)  # before the socket can be closed


class FaultProxy:
    """A TCP proxy on 127.0.0.1 in a background thread (its own asyncio loop).

    proxy = FaultProxy(target_port).start(); proxy.port is where clients connect.
    Also a context manager (starts if needed, stops on exit). Counters (thread-safe):
    ``bytes_up``: client->server payload bytes forwarded (handed to the kernel), all
    connections; ``connections``: client connections accepted (FTP data connections and
    blocked ones too); ``cuts``: faults fired by ``cut_after`` (``block()`` is not one).
    """

    def __init__(self, target_port: int, target_host: str = HOST, *, ftp: bool = False) -> None:
        self.target, self.ftp, self.port = (target_host, target_port), ftp, 0
        self._lock = threading.Lock()
        self._bytes_up = self._connections = self._cuts = 0
        self._cut_size = self._budget = self._cuts_left = self._gen = 0
        self._blocked = self._server_fin = False
        self._conns: set[_Conn] = set()
        self._listeners: dict[Task, bool] = {}  # accept task -> is an FTP data listener
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> FaultProxy:
        if self._loop is not None:
            raise RuntimeError("FaultProxy already started")
        self._loop = loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=loop.run_forever, name="FaultProxy", daemon=True)
        self._thread.start()
        self.port = self._call(self._listen(self.target, self.ftp, once=False))
        return self

    def stop(self) -> None:
        """Close the listeners and every open connection (RST); idempotent."""
        loop, thread, self._loop = self._loop, self._thread, None
        if loop is None or thread is None:
            return
        try:
            asyncio.run_coroutine_threadsafe(self._cut_all(main=True), loop).result(10)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(10)
            loop.close()

    def __enter__(self) -> FaultProxy:
        return self if self._loop is not None else self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def cut_after(self, n_bytes: int, times: int = 1, *, server_sees_fin: bool = False) -> None:
        """Arm a fault: once ``n_bytes`` more client->server bytes have passed (all
        connections, data connections included), reset every open connection; repeat
        ``times`` times, counting ``n_bytes`` afresh after each cut. ``times=0`` disarms.

        With ``server_sees_fin`` the server's side is closed with a FIN instead of a RST,
        so it still reads every byte forwarded before the cut (a RST makes the kernel
        drop what the server had not read yet: how much depends on the machine's load);
        the client's side is reset either way."""
        if n_bytes < 1 or times < 0:
            raise ValueError("cut_after needs n_bytes >= 1 and times >= 0")
        with self._lock:
            self._cut_size, self._budget, self._cuts_left = n_bytes, n_bytes, times
            self._server_fin = server_sees_fin
            self._gen += 1

    def block(self) -> None:
        """The server "disappears": reset open connections now, and new ones at once."""
        with self._lock:
            self._blocked = True
        self._call(self._cut_all(main=False))

    def unblock(self) -> None:
        with self._lock:
            self._blocked = False

    @property
    def bytes_up(self) -> int:
        with self._lock:
            return self._bytes_up

    @property
    def connections(self) -> int:
        with self._lock:
            return self._connections

    @property
    def cuts(self) -> int:
        with self._lock:
            return self._cuts

    def reset_counters(self) -> None:
        with self._lock:
            self._bytes_up = self._connections = self._cuts = 0

    def _call(self, coro: Any) -> Any:
        if self._loop is None:
            coro.close()
            raise RuntimeError("FaultProxy is not running")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)

    # -- everything below runs in the loop thread --

    async def _listen(self, target: tuple[str, int], ftp: bool, once: bool) -> int:
        lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        lsock.bind((HOST, 0))
        lsock.listen(1 if once else 64)
        lsock.setblocking(False)
        task = asyncio.create_task(self._accept(lsock, target, ftp, once))
        self._listeners[task] = once
        task.add_done_callback(self._listeners.pop)
        return int(lsock.getsockname()[1])

    async def _accept(self, lsock: socket.socket, target: tuple[str, int], ftp: bool,
                      once: bool) -> None:
        try:
            while True:
                client, _ = await asyncio.get_running_loop().sock_accept(lsock)
                with self._lock:
                    self._connections += 1
                    blocked = self._blocked
                if blocked:
                    _reset_close(client)
                else:
                    client.setblocking(False)
                    self._conns.add(conn := _Conn(client))
                    conn.task = asyncio.create_task(self._serve(conn, target, ftp))
                if once:
                    return
        finally:
            lsock.close()

    def _cut_now(self, main: bool = False) -> list[Task]:
        """Reset every connection, cancel FTP data listeners (and the main one if ``main``)."""
        tasks = [t for t, data in self._listeners.items() if data or main]
        tasks += [c.task for c in self._conns if c.task is not None]
        for conn in list(self._conns):
            conn.cut()
        for task in tasks:
            task.cancel()
        return tasks

    async def _cut_all(self, main: bool) -> None:  # and wait until all is closed
        await asyncio.gather(*self._cut_now(main), return_exceptions=True)

    async def _serve(self, conn: _Conn, target: tuple[str, int], ftp: bool) -> None:
        client = conn.socks[0]
        try:
            conn.socks.append(server := socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            server.setblocking(False)
            for sock in conn.socks:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            await asyncio.get_running_loop().sock_connect(server, target)
            await asyncio.gather(self._pump(conn, client, server, up=True, ftp=False),
                                 self._pump(conn, server, client, up=False, ftp=ftp))
        except OSError:
            conn.aborted = True  # the server is unreachable: reset the client
        except asyncio.CancelledError:
            pass  # cut
        finally:
            self._conns.discard(conn)
            for i, sock in enumerate(conn.socks):
                if conn.aborted and not (i == 1 and self._server_fin):
                    _reset_close(sock)
                else:
                    sock.close()

    async def _pump(self, conn: _Conn, src: socket.socket, dst: socket.socket, *, up: bool,
                    ftp: bool) -> None:
        """Copy src -> dst until EOF (then half-close dst); an error resets the connection."""
        pending = b""
        try:
            loop = asyncio.get_running_loop()
            while data := await loop.sock_recv(src, BUFSIZE):
                if ftp:  # whole lines only, 227/229 rewritten
                    pending += data
                    end = pending.rfind(b"\n") + 1
                    data, pending = await self._rewrite(pending[:end]), pending[end:]
                while data:
                    take, fire = self._reserve(len(data)) if up else (len(data), None)
                    await self._send(dst, data[:take], up)
                    data = data[take:]
                    if fire is not None and self._fire(fire):
                        return
            await self._send(dst, pending, up)
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)
        except OSError:
            conn.cut()

    def _reserve(self, n: int) -> tuple[int, int | None]:
        """Take up to ``n`` bytes of the armed budget: (bytes to forward, generation to fire
        once they are forwarded, or None while budget remains)."""
        with self._lock:
            if not self._cuts_left:
                return n, None
            take = min(n, self._budget)
            self._budget -= take
            return take, (None if self._budget else self._gen)

    def _fire(self, gen: int) -> bool:
        with self._lock:
            if gen != self._gen or not self._cuts_left or self._budget:
                return False  # re-armed meanwhile
            self._cuts_left -= 1
            self._cuts += 1
            self._gen += 1
            self._budget = self._cut_size
        self._cut_now()
        return True

    async def _send(self, sock: socket.socket, data: bytes, up: bool) -> None:
        view = memoryview(data)
        while view:
            try:
                n = sock.send(view)
            except BlockingIOError:
                await _writable(sock)
                continue
            view = view[n:]
            if up:
                with self._lock:
                    self._bytes_up += n

    async def _rewrite(self, lines: bytes) -> bytes:
        """Point 227/229 replies at a fresh one-shot data listener of the proxy."""
        out = []
        for line in lines.splitlines(keepends=True):
            if m := _PASV.match(line):
                real = int(m[6]) * 256 + int(m[7])
                port = await self._listen((self.target[0], real), False, True)
                line = b"%s127,0,0,1,%d,%d" % (m[1], port // 256, port % 256) + line[m.end():]
            elif m := _EPSV.match(line):
                port = await self._listen((self.target[0], int(m[3])), False, True)
                line = b"%s%d%s" % (m[1], port, m[4]) + line[m.end():]
            out.append(line)
        return b"".join(out)
