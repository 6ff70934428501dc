"""The threaded HTTP server under every sandbox stand-in (ServiceNow, webhooks, OIDC).

    server = LoopbackHttpServer(MyHandler)       # 127.0.0.1, a free port
    running = ServerThread(server, "my-sandbox").start()
    running.port
    running.stop()                               # nothing of it is left afterwards

A stand-in class derives from ``HttpStandIn`` and says only how to make its server
(``_make_server``); it gets ``start``/``stop`` and the context manager.

Each connection gets its own thread (non-daemon, so ``server_close`` joins it).
Handlers derived from ``TrackedHandler`` register their connection, so ``stop``
can cut open keep-alive connections: otherwise a client that keeps one open
(an httpx pool, a browser) would hold ``server_close`` up until it hangs up.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self

__all__ = ["HttpStandIn", "LoopbackHttpServer", "ServerThread", "TrackedHandler"]


class LoopbackHttpServer(ThreadingHTTPServer):
    """``ThreadingHTTPServer`` that knows its open connections and joins their threads."""

    daemon_threads = False  # server_close() joins the connection threads
    block_on_close = True
    allow_reuse_address = True

    def __init__(self, handler: type[BaseHTTPRequestHandler], host: str = "127.0.0.1",
                 port: int = 0) -> None:
        self._connections: set[Any] = set()
        self._connections_lock = threading.Lock()
        self._closing = False
        super().__init__((host, port), handler)

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def add_connection(self, conn: Any) -> None:
        """Track ``conn`` (a socket, or the TLS socket wrapping it); one accepted while the
        server is stopping is cut at once."""
        with self._connections_lock:
            self._connections.add(conn)
            closing = self._closing
        if closing:
            _cut(conn)

    def remove_connection(self, conn: Any) -> None:
        with self._connections_lock:
            self._connections.discard(conn)

    def close_connections(self) -> None:
        """Cut every open (keep-alive) connection, and any that is accepted from now on.

        Only ``shutdown``: the connection's own thread still closes the socket, so no
        socket is closed under a thread that is using it.
        """
        with self._connections_lock:
            self._closing = True
            open_connections = list(self._connections)
        for conn in open_connections:
            _cut(conn)


def _cut(conn: Any) -> None:
    with contextlib.suppress(OSError):
        conn.shutdown(socket.SHUT_RDWR)


class TrackedHandler(BaseHTTPRequestHandler):
    """HTTP/1.1 request handler whose connection its server can cut; logs nothing."""

    server: LoopbackHttpServer
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # else a body waits for the delayed ACK of its headers

    def setup(self) -> None:
        super().setup()
        self.server.add_connection(self.request)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.remove_connection(self.request)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep test and demo output quiet


class ServerThread:
    """Serves one ``LoopbackHttpServer`` on a daemon thread until ``stop``.

    ``stop`` stops accepting, cuts open connections, closes the listening socket and
    joins every thread; calling it twice is harmless.
    """

    def __init__(self, server: LoopbackHttpServer, name: str,
                 poll_interval: float = 0.05) -> None:
        self.server = server
        self._thread = threading.Thread(target=server.serve_forever, name=name,
                                        kwargs={"poll_interval": poll_interval}, daemon=True)
        self._stopped = False

    @property
    def port(self) -> int:
        return self.server.port

    def start(self) -> ServerThread:
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        started = self._thread.ident is not None
        if started:  # shutdown() would wait forever for a loop that never ran
            self.server.shutdown()
        self.server.close_connections()
        self.server.server_close()  # joins the connection threads
        if started:
            self._thread.join()


class HttpStandIn:
    """A stand-in served by one ``LoopbackHttpServer``: ``start``/``stop`` or ``with``.

    ``start`` on a running stand-in and ``stop`` on a stopped one do nothing.
    ``_stopping`` is set while it stops, so handlers waiting on it (injected delays)
    return at once instead of holding the stop up.
    """

    def __init__(self) -> None:
        self._running: ServerThread | None = None
        self._stopping = threading.Event()

    def _make_server(self) -> tuple[LoopbackHttpServer, str]:
        """A new server and its thread's name (called by ``start``)."""
        raise NotImplementedError

    def _started(self, port: int) -> None:
        """Called once the server listens on ``port``."""

    @property
    def running(self) -> bool:
        return self._running is not None

    @property
    def port(self) -> int:
        if self._running is None:
            raise RuntimeError(f"the {type(self).__name__} is not running: call start()")
        return self._running.port

    def start(self) -> Self:
        if self._running is None:
            self._stopping.clear()
            server, name = self._make_server()
            self._running = ServerThread(server, name).start()
            self._started(server.port)
        return self

    def stop(self) -> None:
        if self._running is not None:
            self._stopping.set()
            self._running.stop()
            self._running = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
