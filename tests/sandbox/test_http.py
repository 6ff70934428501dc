"""The sandbox's shared HTTP server: stopping it leaves no thread and no connection behind,
also while a client keeps a keep-alive connection open."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable

import pytest

from fileferry.sandbox.http import HttpStandIn, LoopbackHttpServer, ServerThread, TrackedHandler
from fileferry.sandbox.oidc import OidcProvider
from fileferry.sandbox.servicenow import ServiceNowEmulator
from fileferry.sandbox.webhooks import WebhookReceiver


class _Hello(TrackedHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "5")
        self.end_headers()
        self.wfile.write(b"hello")


def _keep_alive(port: int, request: bytes) -> socket.socket:
    """A connection that has had one answer and stays open (as a client's pool keeps it)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(request)
    answer = b""
    while b"\r\n\r\n" not in answer:
        answer += sock.recv(4096)
    assert answer.startswith(b"HTTP/1.1 "), answer
    head, _, body = answer.partition(b"\r\n\r\n")
    length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length:"))
    while len(body) < length:  # the body may come in a segment of its own
        body += sock.recv(4096)
    return sock


def _stops_promptly(stop: Callable[[], None], seconds: float = 5.0) -> None:
    done = threading.Event()
    thread = threading.Thread(target=lambda: (stop(), done.set()), daemon=True)
    started = time.monotonic()
    thread.start()
    assert done.wait(seconds), "stop() waited for a client's idle keep-alive connection"
    assert time.monotonic() - started < seconds


def test_stop_cuts_idle_keep_alive_connections_and_joins_every_thread() -> None:
    before = set(threading.enumerate())
    running = ServerThread(LoopbackHttpServer(_Hello), "sandbox-http-test").start()
    client = _keep_alive(running.port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    with client:
        _stops_promptly(running.stop)
        client.settimeout(5)
        assert client.recv(4096) == b""  # the server hung up
    assert set(threading.enumerate()) <= before
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", running.port), timeout=1).close()
    running.stop()  # a second stop is harmless


def test_a_server_that_never_started_still_closes() -> None:
    server = LoopbackHttpServer(_Hello)
    ServerThread(server, "never-started").stop()
    assert server.socket.fileno() == -1


@pytest.mark.parametrize("kind", ["webhooks", "oidc", "servicenow"])
def test_every_stand_in_stops_with_a_client_still_connected(kind: str) -> None:
    stand_in: HttpStandIn
    if kind == "webhooks":
        stand_in = WebhookReceiver().start()
        request = b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}"
    elif kind == "oidc":
        stand_in = OidcProvider().start()
        request = b"GET /jwks HTTP/1.1\r\nHost: x\r\n\r\n"
    else:
        stand_in = ServiceNowEmulator().start()
        request = b"GET /api/now/table/incident HTTP/1.1\r\nHost: x\r\n\r\n"
    with _keep_alive(stand_in.port, request):
        _stops_promptly(stand_in.stop)
    assert not stand_in.running
    with pytest.raises(RuntimeError, match="not running"):
        stand_in.port  # noqa: B018
    stand_in.stop()  # a second stop is harmless
