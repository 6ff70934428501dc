"""A pure-Python FTP/FTPS server (pyftpdlib) in a background thread, for the demo.

It serves one directory as ``/`` to one user with a password, with full read/write
permissions. With a :class:`~fileferry.sandbox.tls.TestPki` it speaks FTPS and
requires TLS on both the control and the data channel: explicit (``AUTH TLS``)
by default, implicit (TLS from the first byte) with ``implicit=True``. Without
one it speaks plain FTP.

Needs the ``pyftpdlib`` and ``pyopenssl`` packages.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import warnings
from pathlib import Path
from types import TracebackType
from typing import Any

from OpenSSL import SSL

from fileferry.sandbox.tls import TestPki

# On Python < 3.12 pyftpdlib runs on the standard library's asyncore/asynchat, whose
# import warns that they are deprecated (and our tests turn warnings into errors).
with warnings.catch_warnings():
    warnings.filterwarnings("ignore", r"The (asyncore|asynchat) module is deprecated",
                            DeprecationWarning)
    from pyftpdlib.authorizers import (  # type: ignore[import-untyped,import-not-found,unused-ignore]
        DummyAuthorizer,
    )
    from pyftpdlib.handlers import (  # type: ignore[import-untyped,import-not-found,unused-ignore]
        FTPHandler,
        TLS_FTPHandler,
    )
    from pyftpdlib.ioloop import (  # type: ignore[import-untyped,import-not-found,unused-ignore]
        IOLoop,
    )
    from pyftpdlib.servers import (  # type: ignore[import-untyped,import-not-found,unused-ignore]
        FTPServer,
    )

__all__ = ["FULL_PERMISSIONS", "SandboxFtpServer"]

FULL_PERMISSIONS = "elradfmwMT"
POLL_INTERVAL = 0.05  # seconds; also the longest stop() waits for the loop to notice
JOIN_TIMEOUT = 10.0


class _ImplicitTlsHandler(TLS_FTPHandler):  # type: ignore[misc]
    """Implicit FTPS: TLS from the first byte; the greeting comes after the handshake.

    Data connections are protected from the start (as if PBSZ 0 / PROT P had been
    sent); clients that send PBSZ/PROT anyway get the usual replies.
    """

    _implicit_greeted = False

    def handle(self) -> None:
        self._pbsz = self._prot = True
        self.secure_connection(self.ssl_context)

    def handle_ssl_established(self) -> None:
        if not self._implicit_greeted:
            self._implicit_greeted = True
            super().handle()  # FTPHandler.handle(): on_connect() and the 220 greeting

    def flush_account(self) -> None:  # REIN keeps the data channel protected
        super().flush_account()
        self._pbsz = self._prot = True


def _ssl_context(tls: TestPki) -> SSL.Context:
    context = SSL.Context(SSL.TLS_SERVER_METHOD)
    context.set_min_proto_version(SSL.TLS1_2_VERSION)
    context.set_options(SSL.OP_NO_COMPRESSION)
    context.use_certificate_chain_file(str(tls.cert_file))
    context.use_privatekey_file(str(tls.key_file))
    context.check_privatekey()
    # A session id context lets clients resume the control connection's TLS session
    # on data connections (pyftpdlib does not require it; proftpd and others do).
    context.set_session_id(b"fileferry-sandbox-ftps")
    return context


class SandboxFtpServer:
    """``with SandboxFtpServer(root, user, password, tls=pki) as ftp: ftp.port``.

    ``start()`` serves on 127.0.0.1 and a free port (``self.port``) from a daemon
    thread; passive data ports are picked by the OS. ``stop()`` closes every
    connection and joins the thread.
    """

    def __init__(self, root: Path, username: str, password: str, *, tls: TestPki | None,
                 implicit: bool = False) -> None:
        if implicit and tls is None:
            raise ValueError("implicit FTPS needs a TestPki (tls=...)")
        self.root = Path(root)
        self.username = username
        self._password = password
        self.tls = tls
        self.implicit = implicit
        self.host = "127.0.0.1"
        self.port = 0
        self._server: Any = None
        self._ioloop: Any = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    @property
    def scheme(self) -> str:
        """``ftp``, ``ftps`` (explicit, AUTH TLS) or ``ftps-implicit``."""
        if self.tls is None:
            return "ftp"
        return "ftps-implicit" if self.implicit else "ftps"

    def _handler_class(self) -> type[Any]:
        authorizer = DummyAuthorizer()
        authorizer.add_user(self.username, self._password, str(self.root),
                            perm=FULL_PERMISSIONS)
        # pyftpdlib configures handlers through class attributes (and caches the
        # SSL context on the class): a subclass per server keeps servers apart.
        attrs: dict[str, Any] = {
            "authorizer": authorizer,
            "banner": "FileFerry sandbox FTP server ready.",
            "passive_ports": None,
            "masquerade_address": None,
            "timeout": 600,
            "auth_failed_timeout": 0.2,
        }
        base: type[Any] = FTPHandler
        if self.tls is not None:
            base = _ImplicitTlsHandler if self.implicit else TLS_FTPHandler
            attrs.update(
                certfile=str(self.tls.cert_file),
                keyfile=str(self.tls.key_file),
                ssl_context=_ssl_context(self.tls),
                tls_control_required=True,
                tls_data_required=True,
            )
        return type(f"SandboxFtpHandler_{self.scheme.replace('-', '_')}", (base,), attrs)

    def start(self) -> SandboxFtpServer:
        if self._thread is not None:
            raise RuntimeError("SandboxFtpServer is already running")
        self.root.mkdir(parents=True, exist_ok=True)
        logging.getLogger("pyftpdlib").setLevel(logging.WARNING)
        self._ioloop = IOLoop.factory()  # a private loop, not the process-wide instance
        try:
            self._server = FTPServer((self.host, 0), self._handler_class(), ioloop=self._ioloop)
        except BaseException:
            self._close_loop()
            raise
        self.port = int(self._server.address[1])
        self._stopping.clear()
        self._thread = threading.Thread(target=self._serve, name=f"sandbox-ftp-{self.port}",
                                        daemon=True)
        self._thread.start()
        return self

    def _serve(self) -> None:
        # One poll at a time (instead of serve_forever) so that stop() is noticed
        # quickly, and so that pyftpdlib does not install its own log handler.
        ioloop = self._ioloop
        try:
            while not self._stopping.is_set():
                ioloop.poll(POLL_INTERVAL)
                ioloop.sched.poll()
        finally:
            self._close_loop()

    def _close_loop(self) -> None:
        ioloop, self._ioloop = self._ioloop, None
        if ioloop is None:
            return
        channels = list(ioloop.socket_map.values())
        loop_class = type(ioloop)
        shared = loop_class._instance
        try:
            ioloop.close()  # closes every channel, the scheduler and the poller
        finally:
            loop_class._instance = shared  # close() forgets the process-wide loop
        for channel in channels:
            # A TLS channel whose close_notify could not be sent keeps its socket (and
            # a data channel its file) open: close them for good.
            file_obj = getattr(channel, "file_obj", None)
            if file_obj is not None:
                with contextlib.suppress(Exception):
                    file_obj.close()
            sock = getattr(channel, "socket", None)
            if sock is not None:
                with contextlib.suppress(Exception):
                    sock.close()
        self._server = None

    def stop(self) -> None:
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._stopping.set()
        thread.join(JOIN_TIMEOUT)
        if thread.is_alive():
            raise RuntimeError("the sandbox FTP server thread did not stop")

    def __enter__(self) -> SandboxFtpServer:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
