"""HTTP plumbing of the ServiceNow emulator: a threading HTTP/1.1 server with optional TLS.

Each connection gets its own (joined) thread; ``stop`` shuts down open keep-alive sockets so
no thread outlives the server. A response may ask for the connection to be dropped unanswered.
"""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlsplit

from fileferry.sandbox.http import LoopbackHttpServer, TrackedHandler
from fileferry.sandbox.servicenow.store import ApiError

__all__ = ["MAX_BODY", "App", "HttpServer", "Response", "error_response"]

MAX_BODY = 10 * 1024 * 1024


@dataclass
class Response:
    status: int
    body: Any = None  # JSON-able, or None for no body
    headers: dict[str, str] = field(default_factory=dict)
    drop: bool = False


class App(Protocol):
    def handle(self, method: str, path: str, query: str, headers: dict[str, str],
               body: bytes) -> Response: ...

    def log(self, method: str, path: str, status: int) -> None: ...


class HttpServer(LoopbackHttpServer):
    def __init__(self, emulator: App, context: ssl.SSLContext | None) -> None:
        self.emulator = emulator
        self.context = context
        super().__init__(Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # dropped/aborted connections and TLS handshake failures are routine here


class Handler(TrackedHandler):
    server: HttpServer
    timeout = 60

    def setup(self) -> None:
        context = self.server.context
        if context is not None:  # wrapped first: the TLS socket is the one to track
            self.request.settimeout(10)
            self.request = context.wrap_socket(self.request, server_side=True)
        super().setup()

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            if self.server.context is not None:
                self.request.close()

    def do_GET(self) -> None:
        self._serve()

    do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_GET

    def _read_body(self) -> bytes | None:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks: list[bytes] = []
            total = 0
            while True:
                try:
                    size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                except ValueError:
                    return None
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                total += size
                if total > MAX_BODY:
                    return None
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            return None
        if length > MAX_BODY:
            return None
        return self.rfile.read(length) if length else b""

    def _serve(self) -> None:
        emulator = self.server.emulator
        target = urlsplit(self.path)
        body = self._read_body()
        if body is None:
            self.close_connection = True
            response = error_response(ApiError(400, "Exception while reading request",
                                       "Unreadable body or over the 10 MB limit"))
        else:
            try:
                response = emulator.handle(self.command, target.path, target.query,
                                           dict(self.headers.items()), body)
            except Exception as exc:  # an emulator bug: answer like a server fault
                response = error_response(ApiError(500, "Internal server error", repr(exc)))
        if response.drop:
            emulator.log(self.command, target.path, 0)
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        payload = b"" if response.body is None else json.dumps(response.body).encode()
        self.send_response(response.status)
        if response.body is not None:
            self.send_header("Content-Type", "application/json;charset=UTF-8")
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)
        self.wfile.flush()
        emulator.log(self.command, target.path, response.status)


def error_response(error: ApiError) -> Response:
    return Response(error.status, error.body(), dict(error.headers))


