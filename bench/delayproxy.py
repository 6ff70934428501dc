"""A loopback TCP proxy that delays every byte by a fixed time in each direction.

Run as its own process (case 6 starts it through ``start_delay_proxy``)::

    python -m bench.delayproxy --target-port 2222 --delay-ms 25

It listens on a free 127.0.0.1 port, prints that port on one line, and
serves until stdin closes or SIGTERM. Each chunk read from one side is
written to the other ``delay`` later, in order, so every round trip through
it takes at least twice the delay, like a WAN link with unlimited bandwidth.
The proxy reads eagerly (the senders' TCP windows never fill), so what limits
a tool is its own data in flight: SSH channel windows and SFTP request
pipelining, which is what the case measures. A side whose peer cannot keep
up (more than ``MAX_QUEUED`` bytes waiting) is paused until it can.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import socket
import sys
from collections import deque

__all__ = ["MAX_QUEUED", "DelayPipe", "serve"]

MAX_QUEUED = 64 * 2**20


class DelayPipe(asyncio.Protocol):
    """One side of a proxied connection: what it receives goes to ``peer`` after ``delay``."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.transport: asyncio.Transport | None = None
        self.peer: DelayPipe | None = None
        self._queue: deque[tuple[float, bytes | None]] = deque()  # None: end of stream
        self._queued = 0
        self._timer: asyncio.TimerHandle | None = None
        self._peer_paused = False
        self._loop = asyncio.get_running_loop()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        self._enqueue(data)
        self._queued += len(data)
        if self._queued > MAX_QUEUED and self.transport is not None:
            self.transport.pause_reading()

    def eof_received(self) -> bool:
        self._enqueue(None)
        return True  # keep our half open until the peer has everything

    def connection_lost(self, exc: Exception | None) -> None:
        self._enqueue(None)

    def _enqueue(self, item: bytes | None) -> None:
        self._queue.append((self._loop.time() + self.delay, item))
        if self._timer is None:
            self._timer = self._loop.call_at(self._queue[0][0], self._flush)

    def _flush(self) -> None:
        self._timer = None
        now = self._loop.time()
        peer = self.peer.transport if self.peer is not None else None
        if peer is None:  # the other side is still connecting: nothing may be dropped
            self._timer = self._loop.call_later(0.001, self._flush)
            return
        while self._queue and self._queue[0][0] <= now:
            _, item = self._queue.popleft()
            if peer.is_closing():
                continue
            if item is None:
                if peer.can_write_eof():
                    peer.write_eof()
                else:
                    peer.close()
                continue
            peer.write(item)
            self._queued -= len(item)
        if self._queued <= MAX_QUEUED // 2 and self.transport is not None \
                and not self._peer_paused and not self.transport.is_closing():
            self.transport.resume_reading()
        if self._queue:
            self._timer = self._loop.call_at(self._queue[0][0], self._flush)

    # The peer's transport calls these on its own protocol (the peer's DelayPipe) when its
    # write buffer is full or drained: stop or resume reading from this side's socket.
    def pause_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer._peer_paused = True
            self.peer.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer._peer_paused = False
            if not self.peer.transport.is_closing():
                self.peer.transport.resume_reading()


async def _accepted(client: socket.socket, target: tuple[str, int], delay: float) -> None:
    loop = asyncio.get_running_loop()
    try:
        server_side = DelayPipe(delay)
        client_side = DelayPipe(delay)
        server_side.peer, client_side.peer = client_side, server_side
        await loop.connect_accepted_socket(lambda: client_side, client)
        await loop.create_connection(lambda: server_side, *target)
    except OSError:
        client.close()


async def serve(target_port: int, delay: float, ready: asyncio.Future[int] | None = None
                ) -> None:
    """Accept on a free 127.0.0.1 port and proxy to ``target_port`` until cancelled."""
    loop = asyncio.get_running_loop()
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    listener.setblocking(False)
    tasks: set[asyncio.Task[None]] = set()
    if ready is not None:
        ready.set_result(listener.getsockname()[1])
    try:
        while True:
            client, _ = await loop.sock_accept(listener)
            task = asyncio.create_task(_accepted(client, ("127.0.0.1", target_port), delay))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
    finally:
        listener.close()


async def _main(target_port: int, delay: float) -> None:
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[int] = loop.create_future()
    server = asyncio.create_task(serve(target_port, delay, ready))
    print(await ready, flush=True)
    # Serve until the harness closes our stdin (or ends us).
    await loop.run_in_executor(None, sys.stdin.read)
    server.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await server


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.delayproxy")
    parser.add_argument("--target-port", type=int, required=True)
    parser.add_argument("--delay-ms", type=float, default=25.0)
    args = parser.parse_args()
    asyncio.run(_main(args.target_port, args.delay_ms / 1000))


if __name__ == "__main__":
    main()
