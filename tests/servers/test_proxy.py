"""Self-tests for ``tests/servers/proxy.py``'s FaultProxy.

Plain TCP behaviour against tiny socketserver echo/sink servers, FTP awareness
(227/229 rewriting, data connections through the proxy) against the real ProFTPD.
"""

from __future__ import annotations

import ftplib
import io
import os
import secrets
import shutil
import socket
import socketserver
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.servers.proftpd import ProftpdServer
from tests.servers.proxy import BUFSIZE, FaultProxy

TIMEOUT = 10.0
MIB = 1024 * 1024


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        try:
            while data := self.request.recv(65536):
                self.request.sendall(data)
        except OSError:
            pass


class _Sink(socketserver.BaseRequestHandler):
    """Reads until EOF, then answers with the number of bytes it got (unless reset)."""

    def handle(self) -> None:
        n = 0
        try:
            while data := self.request.recv(65536):
                n += len(data)
            self.request.sendall(b"%d" % n)
        except OSError:
            pass
        self.server.received.append(n)  # type: ignore[attr-defined]


class _Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True

    def __init__(self, handler: type[socketserver.BaseRequestHandler]) -> None:
        super().__init__(("127.0.0.1", 0), handler)
        self.received: list[int] = []
        self.port = int(self.server_address[1])
        self.thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05})
        self.thread.start()

    def close(self) -> None:
        self.shutdown()
        self.server_close()
        self.thread.join(TIMEOUT)


def _serve(handler: type[socketserver.BaseRequestHandler]) -> Iterator[tuple[_Server, FaultProxy]]:
    server = _Server(handler)
    proxy = FaultProxy(server.port).start()
    try:
        yield server, proxy
    finally:
        proxy.stop()
        server.close()


@pytest.fixture
def echo() -> Iterator[tuple[_Server, FaultProxy]]:
    yield from _serve(_Echo)


@pytest.fixture
def sink() -> Iterator[tuple[_Server, FaultProxy]]:
    yield from _serve(_Sink)


def _connect(proxy: FaultProxy) -> socket.socket:
    return socket.create_connection(("127.0.0.1", proxy.port), timeout=TIMEOUT)


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            break
        buf += chunk
    return bytes(buf)


def _wait_until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def _is_cut(sock: socket.socket) -> bool:
    """True when the proxy cut ``sock``: the next read gives a reset or EOF."""
    try:
        return sock.recv(1) == b""
    except (ConnectionResetError, BrokenPipeError):
        return True


def _send_until_cut(sock: socket.socket, total: int) -> bool:
    """Send ``total`` bytes to the sink: True if the proxy cut the connection (reset, or
    EOF without the sink's answer), False if the sink confirms it got them all."""
    try:
        sock.sendall(os.urandom(total))
        sock.shutdown(socket.SHUT_WR)
        answer = sock.recv(64)
    except OSError:  # ECONNRESET, EPIPE, ENOTCONN
        return True
    if not answer:
        return True
    assert int(answer) == total
    return False


def test_bytes_pass_and_are_counted(echo: tuple[_Server, FaultProxy]) -> None:
    _, proxy = echo
    payload = os.urandom(300_000)
    with _connect(proxy) as sock:
        sock.sendall(payload)
        assert _recv_exact(sock, len(payload)) == payload
        sock.shutdown(socket.SHUT_WR)
        assert sock.recv(1) == b""  # a clean EOF (FIN), not a reset
    with _connect(proxy) as sock:
        sock.sendall(b"hello")
        assert _recv_exact(sock, 5) == b"hello"
    assert proxy.bytes_up == len(payload) + 5
    assert proxy.connections == 2
    assert proxy.cuts == 0
    proxy.reset_counters()
    assert (proxy.bytes_up, proxy.connections, proxy.cuts) == (0, 0, 0)


def test_cut_after_resets_at_n_bytes(sink: tuple[_Server, FaultProxy]) -> None:
    server, proxy = sink
    with _connect(proxy) as sock:
        sock.sendall(b"x" * 1000)  # forwarded before arming: not counted towards the fault
        _wait_until(lambda: proxy.bytes_up == 1000)
        proxy.cut_after(100_000)
        assert _send_until_cut(sock, MIB)
    assert proxy.cuts == 1
    assert 101_000 <= proxy.bytes_up <= 101_000 + BUFSIZE
    assert proxy.bytes_up == 101_000  # the chunk crossing n is forwarded only up to n
    with _connect(proxy) as sock:  # fired once: disarmed now
        assert not _send_until_cut(sock, 200_000)
    assert proxy.cuts == 1
    assert proxy.bytes_up == 301_000
    _wait_until(lambda: len(server.received) == 2)  # what arrived at the server
    assert sum(server.received) <= proxy.bytes_up


def test_cut_twice_across_reconnects(sink: tuple[_Server, FaultProxy]) -> None:
    _, proxy = sink
    proxy.cut_after(50_000, times=2)
    for expected_cuts in (1, 2):
        with _connect(proxy) as sock:
            assert _send_until_cut(sock, MIB)
        assert proxy.cuts == expected_cuts
        assert proxy.bytes_up == 50_000 * expected_cuts
    with _connect(proxy) as sock:
        assert not _send_until_cut(sock, 300_000)
    assert (proxy.cuts, proxy.bytes_up, proxy.connections) == (2, 400_000, 3)


def test_cut_counts_across_connections_and_cuts_all(sink: tuple[_Server, FaultProxy]) -> None:
    _, proxy = sink
    proxy.cut_after(50_000)
    with _connect(proxy) as a, _connect(proxy) as b:
        a.sendall(b"a" * 30_000)
        _wait_until(lambda: proxy.bytes_up == 30_000)
        assert _send_until_cut(b, 30_000 + MIB)
        assert _is_cut(a)  # idle, but cut as well
    assert (proxy.cuts, proxy.bytes_up) == (1, 50_000)


def test_disarm(sink: tuple[_Server, FaultProxy]) -> None:
    _, proxy = sink
    proxy.cut_after(10_000, times=3)
    proxy.cut_after(10_000, times=0)
    with _connect(proxy) as sock:
        assert not _send_until_cut(sock, 100_000)
    assert proxy.cuts == 0
    with pytest.raises(ValueError):
        proxy.cut_after(0)


def test_block_and_unblock(echo: tuple[_Server, FaultProxy]) -> None:
    _, proxy = echo
    with _connect(proxy) as old:
        old.sendall(b"ping")
        assert _recv_exact(old, 4) == b"ping"
        proxy.block()
        assert _is_cut(old)
    for _ in range(2):  # accepted, then reset at once: sometimes before connect() returns
        try:
            new = _connect(proxy)
        except ConnectionResetError:
            continue
        with new:
            assert _is_cut(new)
    proxy.unblock()
    with _connect(proxy) as sock:
        sock.sendall(b"pong")
        assert _recv_exact(sock, 4) == b"pong"
    assert proxy.connections == 4
    assert proxy.cuts == 0  # block() is not a cut_after fault


def test_unreachable_target_resets_client() -> None:
    with socket.socket() as placeholder:
        placeholder.bind(("127.0.0.1", 0))
        dead_port = placeholder.getsockname()[1]  # bound, never listening
        with FaultProxy(dead_port) as proxy:
            try:
                sock = _connect(proxy)
            except ConnectionResetError:
                return  # the reset can beat connect()'s return
            with sock:
                assert _is_cut(sock)


def test_stop_closes_everything_and_is_idempotent(echo: tuple[_Server, FaultProxy]) -> None:
    _, proxy = echo
    sock = _connect(proxy)
    with sock:
        sock.sendall(b"x")
        assert _recv_exact(sock, 1) == b"x"
        proxy.stop()
        assert _is_cut(sock)
    proxy.stop()
    with pytest.raises(ConnectionRefusedError):
        _connect(proxy).close()


# -- FTP through the proxy (ProFTPD's plain port) -----------------------------------------


@pytest.fixture
def ftp_dir(proftpd: ProftpdServer) -> Path:
    path = proftpd.root / secrets.token_hex(6)
    path.mkdir()
    shutil.chown(path, proftpd.username)
    return path


@pytest.fixture
def ftp_proxy(proftpd: ProftpdServer) -> Iterator[FaultProxy]:
    assert proftpd.plain_port is not None
    with FaultProxy(proftpd.plain_port, ftp=True) as proxy:
        yield proxy


def _login(proxy: FaultProxy, server: ProftpdServer, directory: Path, mode: str) -> ftplib.FTP:
    ftp = ftplib.FTP(timeout=TIMEOUT)
    try:
        ftp.connect("127.0.0.1", proxy.port)
        ftp.login(server.username, server.password)
        ftp.cwd(directory.name)
    except BaseException:
        ftp.close()
        raise
    if mode == "epsv":
        def makepasv() -> tuple[str, int]:
            assert ftp.sock is not None
            return ftplib.parse229(ftp.sendcmd("EPSV"), ftp.sock.getpeername())
        ftp.makepasv = makepasv  # type: ignore[method-assign]
    return ftp


@pytest.mark.parametrize("mode", ["pasv", "epsv"])
def test_ftp_transfers_through_proxy(proftpd: ProftpdServer, ftp_dir: Path,
                                     ftp_proxy: FaultProxy, mode: str) -> None:
    payload = os.urandom(MIB)
    ftp = _login(ftp_proxy, proftpd, ftp_dir, mode)
    try:
        cmd = "EPSV" if mode == "epsv" else "PASV"
        reply = ftp.sendcmd(cmd)
        port = (ftplib.parse229(reply, ("127.0.0.1", 0))[1] if mode == "epsv"
                else ftplib.parse227(reply)[1])
        assert ftp_proxy.connections == 1
        with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT):
            pass  # the rewritten reply points at a proxy data listener
        _wait_until(lambda: ftp_proxy.connections == 2)
        ftp.storbinary("STOR big.bin", io.BytesIO(payload))
        out = io.BytesIO()
        ftp.retrbinary("RETR big.bin", out.write)
        assert out.getvalue() == payload
        ftp.quit()
    finally:
        ftp.close()
    assert (ftp_dir / "big.bin").read_bytes() == payload
    assert ftp_proxy.bytes_up >= MIB
    assert ftp_proxy.connections == 4  # control, the probe, STOR's and RETR's data connections


@pytest.mark.parametrize("mode", ["pasv", "epsv"])
def test_ftp_cut_during_stor(proftpd: ProftpdServer, ftp_dir: Path, ftp_proxy: FaultProxy,
                             mode: str) -> None:
    payload = os.urandom(MIB)
    ftp = _login(ftp_proxy, proftpd, ftp_dir, mode)
    try:
        before = ftp_proxy.bytes_up
        ftp_proxy.cut_after(300_000)
        with pytest.raises((OSError, EOFError, ftplib.Error)):
            ftp.storbinary("STOR cut.bin", io.BytesIO(payload))
    finally:
        ftp.close()
    assert ftp_proxy.cuts == 1
    assert ftp_proxy.bytes_up == before + 300_000
    assert (ftp_dir / "cut.bin").stat().st_size < MIB
    # Fired once: a fresh session gets through.
    ftp = _login(ftp_proxy, proftpd, ftp_dir, mode)
    try:
        ftp.storbinary("STOR cut.bin", io.BytesIO(payload))
        ftp.quit()
    finally:
        ftp.close()
    assert (ftp_dir / "cut.bin").read_bytes() == payload
