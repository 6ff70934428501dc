"""A local webhook receiver on 127.0.0.1 that records every POST (tests and the demo).

    with WebhookReceiver() as hooks:
        url = hooks.url("/teams")           # any path is accepted
        hooks.fail_next(2, status=429, retry_after=1)
        ...
        hooks.received[0].body              # the parsed JSON (None if it was not JSON)

Every POST is recorded, also the ones answered with an injected failure
(``status`` tells which answer it got). ``stop()`` joins the server's threads.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from fileferry.sandbox.http import HttpStandIn, LoopbackHttpServer, TrackedHandler

__all__ = ["Received", "WebhookReceiver"]


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: Any  # the parsed JSON document, or None
    raw: bytes
    status: int  # what the receiver answered
    at: float = field(default_factory=time.time)


@dataclass(frozen=True)
class _Fault:
    status: int
    retry_after: str | None
    delay: float


class _Server(LoopbackHttpServer):
    receiver: WebhookReceiver


class _Handler(TrackedHandler):
    server: _Server

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        self.server.receiver._handle(self, raw)


class WebhookReceiver(HttpStandIn):
    """Records POSTs; ``start``/``stop`` or use it as a context manager."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__()
        self._host = host
        self._port = port
        self._lock = threading.Lock()
        self._faults: deque[_Fault] = deque()
        self._received: list[Received] = []
        self._new = threading.Condition(self._lock)

    def _make_server(self) -> tuple[_Server, str]:
        server = _Server(_Handler, self._host, self._port)
        server.receiver = self
        return server, "webhook-receiver"

    # --- addresses and records

    def url(self, path: str = "/") -> str:
        return f"http://{self._host}:{self.port}/{path.lstrip('/')}"

    @property
    def received(self) -> list[Received]:
        with self._lock:
            return list(self._received)

    def bodies(self, path: str | None = None) -> list[Any]:
        return [r.body for r in self.received if path is None or r.path == path]

    def clear(self) -> None:
        with self._lock:
            self._received.clear()
            self._faults.clear()

    def wait_for(self, count: int, timeout: float = 5.0) -> list[Received]:
        """The records once there are at least ``count`` (TimeoutError otherwise)."""
        with self._new:
            if not self._new.wait_for(lambda: len(self._received) >= count, timeout):
                raise TimeoutError(f"{len(self._received)} POSTs received, wanted {count}")
            return list(self._received)

    # --- fault injection

    def fail_next(self, n: int = 1, status: int = 503, retry_after: float | str | None = None,
                  delay: float = 0.0) -> None:
        """Answer the next ``n`` POSTs with ``status`` (and a Retry-After header), after
        ``delay`` seconds (a delay longer than the client's timeout makes it time out)."""
        ra = None if retry_after is None else (
            retry_after if isinstance(retry_after, str) else f"{retry_after:g}")
        with self._lock:
            self._faults.extend(_Fault(status, ra, delay) for _ in range(n))

    def delay_next(self, n: int, seconds: float) -> None:
        """Answer the next ``n`` POSTs with 200 only after ``seconds``."""
        self.fail_next(n, status=200, delay=seconds)

    # --- the handler's side

    def _handle(self, handler: _Handler, raw: bytes) -> None:
        with self._lock:
            fault = self._faults.popleft() if self._faults else None
        status = fault.status if fault else 200
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = None
        record = Received(path=handler.path, headers=dict(handler.headers.items()), body=body,
                          raw=raw, status=status)
        with self._new:
            self._received.append(record)
            self._new.notify_all()
        if fault is not None and fault.delay:
            self._stopping.wait(fault.delay)
        reply = b"ok" if 200 <= status < 300 else f"error {status}".encode()
        try:
            handler.send_response(status)
            if fault is not None and fault.retry_after is not None:
                handler.send_header("Retry-After", fault.retry_after)
            handler.send_header("Content-Type", "text/plain")
            handler.send_header("Content-Length", str(len(reply)))
            handler.send_header("Connection", "close")
            handler.end_headers()
            handler.wfile.write(reply)
        except OSError:
            pass  # the client gave up (a timeout test)
        handler.close_connection = True
