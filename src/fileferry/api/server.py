"""Running the app with uvicorn: in the foreground (``fileferry serve``) or on a
background thread with its own event loop (``fileferry demo``, the tests)."""

from __future__ import annotations

import threading
import time
from types import TracebackType

import uvicorn

from fileferry.api.app import create_app
from fileferry.api.auth import Authenticator
from fileferry.config import Settings

__all__ = ["BackgroundServer", "uvicorn_server"]

# Open event streams would hold a stop up; they are cut after this many seconds.
GRACEFUL_SECONDS = 3


def uvicorn_server(settings: Settings, host: str, port: int,
                   authenticator: Authenticator | None = None,
                   log_level: str = "info") -> uvicorn.Server:
    app = create_app(settings, authenticator)
    config = uvicorn.Config(app, host=host, port=port, log_level=log_level,
                            lifespan="on", timeout_graceful_shutdown=GRACEFUL_SECONDS,
                            server_header=False, proxy_headers=False)
    return uvicorn.Server(config)


class BackgroundServer:
    """The server on a daemon thread; ``start()`` returns once it listens (or raises)."""

    def __init__(self, settings: Settings, host: str = "127.0.0.1", port: int = 0,
                 authenticator: Authenticator | None = None,
                 log_level: str = "warning") -> None:
        from fileferry.sandbox.net import free_port

        self.host, self.port = host, port or free_port()
        self.server = uvicorn_server(settings, self.host, self.port, authenticator, log_level)
        self._thread = threading.Thread(target=self.server.run, name="fileferry-api",
                                        daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 30.0) -> BackgroundServer:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the API server did not start on {self.url}")
            time.sleep(0.02)
        return self

    def stop(self, timeout: float = 30.0) -> None:
        self.server.should_exit = True
        self._thread.join(timeout)

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
