"""Which cipher each SSH client really uses: read the algorithm lists from the key exchange.

SSH's first packets (banner and KEXINIT) travel in the clear, and the cipher
is the first one in the client's list that the server also offers (RFC 4253
7.1). So we read the server's list from the real sshd, and each client's list
by pointing it, once, at a throw-away listener on 127.0.0.1 that answers with
the real server's banner, reads the client's KEXINIT and hangs up. The client
then fails to connect, which is expected: it never gets near authentication.
"""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

__all__ = ["KexOffer", "client_offer", "negotiate", "server_offer"]

_MSG_KEXINIT = 20
_NAMES = ("kex", "host_key", "cipher_c2s", "cipher_s2c", "mac_c2s", "mac_s2c",
          "compression_c2s", "compression_s2c")


@dataclass(frozen=True)
class KexOffer:
    """The algorithm lists one side of an SSH connection offers, in its order of preference."""

    banner: str
    lists: dict[str, tuple[str, ...]]

    def __getitem__(self, name: str) -> tuple[str, ...]:
        return self.lists[name]


def _read_exact(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        part = sock.recv(n - len(data))
        if not part:
            raise ConnectionError("connection closed during the SSH key exchange")
        data += part
    return data


def _read_banner(sock: socket.socket) -> str:
    while True:  # a server may send other lines before its banner
        line = b""
        while not line.endswith(b"\n"):
            line += _read_exact(sock, 1)
            if len(line) > 1024:
                raise ConnectionError("no SSH banner")
        if line.startswith(b"SSH-"):
            return line.decode(errors="replace").strip()


def _read_kexinit(sock: socket.socket, banner: str) -> KexOffer:
    header = _read_exact(sock, 5)
    length, padding = int.from_bytes(header[:4], "big"), header[4]
    if not 5 <= length <= 35000:
        raise ConnectionError(f"implausible SSH packet length {length}")
    payload = _read_exact(sock, length - 1)[: length - 1 - padding]
    if payload[0] != _MSG_KEXINIT:
        raise ConnectionError(f"expected KEXINIT, got message {payload[0]}")
    pos, lists = 17, {}  # message number and 16-byte cookie
    for name in _NAMES:
        size = int.from_bytes(payload[pos:pos + 4], "big")
        lists[name] = tuple(payload[pos + 4:pos + 4 + size].decode().split(","))
        pos += 4 + size
    return KexOffer(banner, lists)


def server_offer(port: int, host: str = "127.0.0.1") -> KexOffer:
    with socket.create_connection((host, port), timeout=10) as sock:
        banner = _read_banner(sock)
        sock.sendall(b"SSH-2.0-fileferry-bench-probe\r\n")
        return _read_kexinit(sock, banner)


def client_offer(command_for_port: Callable[[int], list[str]], server_banner: str, *,
                 env: dict[str, str], cwd: Path, timeout: float = 30) -> KexOffer:
    """Run the client against a throw-away listener and return what it offered."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        listener.settimeout(timeout)
        port = listener.getsockname()[1]
        proc = subprocess.Popen(command_for_port(port), env=env, cwd=cwd,
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        try:
            conn, _ = listener.accept()
            with conn:
                conn.settimeout(timeout)
                conn.sendall(server_banner.encode() + b"\r\n")
                banner = _read_banner(conn)
                return _read_kexinit(conn, banner)
        finally:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.terminate()
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


def negotiate(client: tuple[str, ...], server: tuple[str, ...]) -> str:
    """RFC 4253 7.1: the first algorithm on the client's list that the server supports."""
    return next((name for name in client if name in server), "(none in common)")
