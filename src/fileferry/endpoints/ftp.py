"""FTP and FTPS destinations (ftplib in worker threads, a small pool of logged-in sessions).

``ftps://`` is explicit FTPS (AUTH TLS, then PROT P); ``implicit: true``
speaks TLS from the first byte (port 990 unless the URL names one). Plain
``ftp://`` needs ``allow_insecure: true``. Certificates are verified against
the system store or ``ca_file``; the data connection reuses the control
connection's TLS session, as most servers demand. Passive mode (EPSV first)
by default. Server-side digests come from ``HASH``, ``XSHA256`` and ``XMD5``
where ``FEAT`` offers them.
"""

from __future__ import annotations

import asyncio
import contextlib
import ftplib
import posixpath
import re
import socket
import ssl
import zlib
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, TypeVar
from urllib.parse import urlsplit

from fileferry.endpoints.base import Capabilities, HashName, ObjectInfo
from fileferry.endpoints.tlsinfo import describe_presented_certificate
from fileferry.errors import (
    AuthenticationFailed,
    CertificateError,
    DestinationError,
    EndpointUnavailable,
    FileFerryError,
    InsecureTransport,
    PermissionDenied,
    TargetExists,
)

if TYPE_CHECKING:
    from fileferry.config import DestinationSettings

__all__ = ["FtpDestination", "map_ftp_error"]

T = TypeVar("T")
READ_BLOCK = 1024 * 1024
_HEX = re.compile(r"\b[0-9a-fA-F]{32}(?:[0-9a-fA-F]{32})?\b")


class _Ftps(ftplib.FTP_TLS):
    """Explicit FTPS whose data connections resume the control connection's TLS session."""

    def ntransfercmd(self, cmd: str,
                     rest: int | str | None = None) -> tuple[socket.socket, int | None]:
        conn, size = ftplib.FTP.ntransfercmd(self, cmd, rest)
        # Without it, closing TLS on the data connection waits for a delayed ACK (~40 ms).
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self._prot_p:  # type: ignore[attr-defined]
            session = getattr(self.sock, "session", None)
            conn = self.context.wrap_socket(conn, server_hostname=self.host, session=session)
        return conn, size

    def makepasv(self) -> tuple[str, int]:
        """Extended passive first (works through NAT and IPv6), then classic PASV."""
        assert self.sock is not None
        peer = self.sock.getpeername()
        try:
            _, port = ftplib.parse229(self.sendcmd("EPSV"), peer)
            return peer[0], port
        except ftplib.error_perm:
            return super().makepasv()


class _ImplicitFtps(_Ftps):
    """FTPS where the control connection is TLS from the first byte."""

    def connect(self, host: str = "", port: int = 0, timeout: float = -999,
                source_address: tuple[str, int] | None = None) -> str:
        self.host, self.port = host, port
        if timeout != -999:
            self.timeout = timeout
        raw = socket.create_connection((host, port), self.timeout)
        self.sock = self.context.wrap_socket(raw, server_hostname=host)
        self.af = self.sock.family
        self.file = self.sock.makefile("r", encoding=self.encoding)
        self.welcome = self.getresp()
        return self.welcome


class _Plain(ftplib.FTP):
    makepasv = _Ftps.makepasv


def _features(conn: ftplib.FTP) -> dict[str, str]:
    """``FEAT`` as {NAME: rest of line}; empty when the server has no FEAT."""
    try:
        reply = conn.sendcmd("FEAT")
    except ftplib.Error:
        return {}
    feats: dict[str, str] = {}
    for line in reply.splitlines()[1:-1]:
        name, _, rest = line.strip().partition(" ")
        feats[name.upper()] = rest.strip()
    return feats


def _hash_algorithms(feats: dict[str, str]) -> dict[HashName, str]:
    """How to ask the server for each digest: ``HASH <ALG>`` or an ``X`` command."""
    via: dict[HashName, str] = {}
    offered = {a.rstrip("*").upper() for a in feats.get("HASH", "").split(";") if a}
    for name, hash_alg, xcmd in (("sha256", "SHA-256", "XSHA256"), ("md5", "MD5", "XMD5")):
        if hash_alg in offered:
            via[name] = f"HASH {hash_alg}"  # type: ignore[index]
        elif xcmd in feats:
            via[name] = xcmd  # type: ignore[index]
    return via


class _Pool:
    """Logged-in sessions kept for reuse; at most ``cap`` exist at once."""

    def __init__(self, factory: Callable[[], ftplib.FTP], cap: int) -> None:
        self._factory = factory
        self._idle: list[ftplib.FTP] = []
        self._gate = asyncio.Semaphore(cap)

    async def acquire(self) -> ftplib.FTP:
        await self._gate.acquire()
        try:
            return self._idle.pop() if self._idle else await asyncio.to_thread(self._factory)
        except BaseException:
            self._gate.release()
            raise

    def release(self, conn: ftplib.FTP, healthy: bool) -> None:
        if healthy:
            self._idle.append(conn)
        else:
            conn.close()
        self._gate.release()

    def seed(self, conn: ftplib.FTP) -> None:
        self._idle.append(conn)

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.to_thread(conn.quit), 5)
            conn.close()


class FtpDestination:
    """A connected FTP/FTPS destination; create with ``await FtpDestination.connect(...)``."""

    def __init__(self, name: str, settings: DestinationSettings, pool: _Pool, root: str,
                 feats: dict[str, str], compression: bool) -> None:
        self.name = name
        self.settings = settings
        self.root = root
        self._pool = pool
        self._feats = feats
        self._hash_via = _hash_algorithms(feats)
        self._mode_z = compression and "MODE Z" in {f"{k} {v}".strip() for k, v in feats.items()}
        self._known_dirs: set[str] = set()
        self.capabilities = Capabilities(hashes=frozenset(self._hash_via),
                                         supports_offset_writes=False,
                                         supports_atomic_rename=False,
                                         supports_resume="REST" in feats)

    @classmethod
    async def connect(cls, name: str, settings: DestinationSettings, sessions: int = 6,
                      compression: bool = False) -> FtpDestination:
        url = settings.parsed
        where = f"{url.host}:{_port(settings)}"
        if url.scheme == "ftp" and not settings.allow_insecure:
            raise InsecureTransport(
                f"destinations.{name} is plain ftp://, which sends the password and the files "
                "in clear text; use ftps:// if the partner offers it, or set "
                f"destinations.{name}.allow_insecure: true for a trusted private network")
        factory = lambda: _login(settings)  # noqa: E731
        pool = _Pool(factory, sessions)
        try:
            conn = await asyncio.to_thread(factory)
        except ssl.SSLCertVerificationError as exc:
            raise CertificateError(await asyncio.to_thread(
                describe_presented_certificate, settings, exc)) from exc
        except Exception as exc:
            raise map_ftp_error(exc, f"connecting to {name} ({where})") from exc
        try:
            feats = await asyncio.to_thread(_features, conn)
            home = await asyncio.to_thread(conn.pwd)
        except Exception as exc:
            conn.close()
            raise map_ftp_error(exc, f"starting the session on {name}") from exc
        pool.seed(conn)
        path = url.path
        if path == "~" or path.startswith("~/"):
            path = home.rstrip("/") + path[1:]
        return cls(name, settings, pool, posixpath.normpath(path), feats, compression)

    async def _run(self, what: str, fn: Callable[[ftplib.FTP], T]) -> T:
        conn = await self._pool.acquire()
        healthy = False
        try:
            result = await asyncio.to_thread(fn, conn)
            healthy = True
            return result
        except ftplib.Error as exc:
            healthy = not isinstance(exc, ftplib.error_temp | ftplib.error_proto)
            raise map_ftp_error(exc, what) from exc
        except Exception as exc:
            raise map_ftp_error(exc, what) from exc
        finally:
            self._pool.release(conn, healthy)

    async def stat(self, path: str) -> ObjectInfo | None:
        def run(conn: ftplib.FTP) -> ObjectInfo | None:
            try:
                if "MLST" in self._feats:
                    facts = conn.sendcmd(f"MLST {path}").splitlines()[1].strip()
                    pairs = dict(f.split("=", 1) for f in facts.split(";") if "=" in f)
                    return ObjectInfo(path, int(pairs.get("size", pairs.get("Size", "0"))))
                conn.voidcmd("TYPE I")
                size = conn.size(path)
                return ObjectInfo(path, int(size or 0))
            except ftplib.error_perm as exc:
                if str(exc)[:3] in {"550", "450", "501"}:
                    return None
                raise

        return await self._run(f"stat {path}", run)

    async def makedirs(self, path: str) -> None:
        parts = [p for p in path.split("/") if p]
        todo = ["/" + "/".join(parts[:i]) for i in range(1, len(parts) + 1)]
        todo = [d for d in todo if d not in self._known_dirs]

        def run(conn: ftplib.FTP) -> None:
            for directory in todo:
                try:
                    conn.mkd(directory)
                except ftplib.error_perm:
                    conn.cwd(directory)  # already there (or the real error surfaces here)

        if todo:
            await self._run(f"creating directory {path}", run)
            self._known_dirs.update(todo)

    async def open_write(self, path: str, offset: int = 0, *, truncate: bool = True,
                         size: int | None = None, digest: HashName | None = None) -> _FtpWriter:
        """Start ``STOR`` (``REST offset`` first when resuming); holds one session.

        ``size`` and ``digest`` are not used: one data connection carries the
        whole file, and the server hashes it when asked (``HASH``)."""
        conn = await self._pool.acquire()
        try:
            def start() -> socket.socket:
                conn.voidcmd("TYPE I")
                if self._mode_z:
                    conn.voidcmd("MODE Z")
                return conn.transfercmd(f"STOR {path}", rest=offset or None)

            data = await asyncio.to_thread(start)
        except BaseException as exc:
            self._pool.release(conn, isinstance(exc, ftplib.error_perm))
            if isinstance(exc, Exception):
                raise map_ftp_error(exc, f"opening {path} for writing") from exc
            raise
        return _FtpWriter(self._pool, conn, data, path, self._mode_z)

    async def rename(self, src: str, dst: str, overwrite: bool) -> None:
        # RNTO replaces an existing file on most servers, so "no overwrite" is checked first.
        if not overwrite and await self.stat(dst) is not None:
            raise TargetExists(f"{dst} already exists on {self.name}")

        def run(conn: ftplib.FTP) -> None:
            try:
                conn.rename(src, dst)
            except ftplib.error_perm:
                if not overwrite:
                    raise
                conn.delete(dst)  # a server that will not rename over a file
                conn.rename(src, dst)

        await self._run(f"renaming {src} to {dst}", run)

    async def remove(self, path: str) -> None:
        def run(conn: ftplib.FTP) -> None:
            try:
                conn.delete(path)
            except ftplib.error_perm as exc:
                if not str(exc).startswith("550"):
                    raise

        await self._run(f"removing {path}", run)

    async def digest(self, path: str, algorithm: HashName) -> str:
        via = self._hash_via.get(algorithm)
        if via is None:
            raise DestinationError(f"{self.name} offers no server-side {algorithm}")

        def run(conn: ftplib.FTP) -> str:
            if via.startswith("HASH "):
                conn.sendcmd(f"OPTS HASH {via[5:]}")
                reply = conn.sendcmd(f"HASH {path}")
            else:
                reply = conn.sendcmd(f"{via} {path}")
            found = _HEX.findall(reply.split(" ", 1)[1] if " " in reply else reply)
            if not found:
                raise DestinationError(f"unexpected {via} reply from {self.name}: {reply!r}")
            return str(found[0]).lower()

        return await self._run(f"{via} {path}", run)

    async def digest_ranges(self, path: str,
                            ranges: list[tuple[int, int]]) -> tuple[list[str], str]:
        raise DestinationError(f"{self.name}: FTP destinations do not hash byte ranges")

    async def open_read(self, path: str) -> AsyncIterator[bytes]:
        conn = await self._pool.acquire()
        healthy = False
        try:
            def start() -> socket.socket:
                conn.voidcmd("TYPE I")
                return conn.transfercmd(f"RETR {path}")

            data = await asyncio.to_thread(start)
            try:
                while chunk := await asyncio.to_thread(data.recv, READ_BLOCK):
                    yield chunk
            finally:
                data.close()
            await asyncio.to_thread(conn.voidresp)
            healthy = True
        except Exception as exc:
            raise map_ftp_error(exc, f"reading back {path}") from exc
        finally:
            self._pool.release(conn, healthy)

    async def close(self) -> None:
        await self._pool.close()


class _FtpWriter:
    def __init__(self, pool: _Pool, conn: ftplib.FTP, data: socket.socket, path: str,
                 mode_z: bool) -> None:
        self._pool = pool
        self._conn: ftplib.FTP | None = conn
        self._data = data
        self._path = path
        self._deflate = zlib.compressobj() if mode_z else None
        self.acknowledged = 0
        """Bytes handed to the data connection: FTP stores a stream in order, so after a
        failure the server's SIZE says how far it got."""

    async def write(self, data: bytes) -> None:
        payload = self._deflate.compress(data) if self._deflate else data
        try:
            await asyncio.to_thread(self._data.sendall, payload)
        except Exception as exc:
            raise map_ftp_error(exc, f"writing {self._path}") from exc
        self.acknowledged += len(data)

    async def commit(self) -> None:
        conn = self._conn
        assert conn is not None, "commit after commit or abort"

        def finish() -> None:
            if self._deflate is not None:
                self._data.sendall(self._deflate.flush())
            if isinstance(self._data, ssl.SSLSocket):
                # Some servers (ProFTPD with MODE Z) answer the close_notify with data;
                # the 226 reply below and the verification decide success, not this.
                with contextlib.suppress(ssl.SSLError, OSError):
                    self._data.unwrap()
            self._data.close()
            conn.voidresp()
            if self._deflate is not None:
                conn.voidcmd("MODE S")

        try:
            await asyncio.to_thread(finish)
        except Exception as exc:
            self._release(healthy=False)
            raise map_ftp_error(exc, f"finishing {self._path}") from exc
        self._release(healthy=True)

    async def abort(self) -> None:
        with contextlib.suppress(Exception):
            self._data.close()
        self._release(healthy=False)

    def _release(self, healthy: bool) -> None:
        if self._conn is not None:
            self._pool.release(self._conn, healthy)
            self._conn = None


def _port(settings: DestinationSettings) -> int:
    if urlsplit(settings.url).port is None and settings.implicit:
        return 990
    return settings.parsed.port


def _login(settings: DestinationSettings) -> ftplib.FTP:
    """A new control connection, TLS-protected where the scheme says so, logged in."""
    url = settings.parsed
    user = url.username or "anonymous"
    password = settings.password.get_secret_value() if settings.password else ""
    timeout = settings.connect_timeout
    conn: ftplib.FTP
    if url.scheme == "ftps":
        context = ssl.create_default_context(cafile=str(settings.ca_file)
                                             if settings.ca_file else None)
        cls = _ImplicitFtps if settings.implicit else _Ftps
        conn = cls(context=context, timeout=timeout, encoding="utf-8")
    else:
        conn = _Plain(timeout=timeout, encoding="utf-8")
    try:
        conn.connect(url.host, _port(settings))
        if isinstance(conn, _Ftps) and not settings.implicit:
            conn.auth()
        conn.login(user, password)
        if isinstance(conn, _Ftps):
            conn.prot_p()
        conn.set_pasv(settings.passive)
    except BaseException:
        conn.close()
        raise
    return conn


def map_ftp_error(exc: BaseException, what: str) -> FileFerryError:
    """Translate an ftplib, ssl or socket error (the caller raises it ``from exc``)."""
    if isinstance(exc, FileFerryError):
        return exc
    text = str(exc).strip()
    code = text[:3]
    if isinstance(exc, ftplib.error_perm):
        if code == "530":
            return AuthenticationFailed(f"{what}: the server rejected the login ({text}); check "
                                        "the username and password")
        if code in {"500", "502", "504"} and "AUTH" in what.upper():
            return InsecureTransport(f"{what}: the server does not offer TLS ({text})")
        if code in {"550", "553"} and re.search(r"denied|permission|not allowed", text, re.I):
            return PermissionDenied(f"{what}: {text}")
        return DestinationError(f"{what}: {text}")
    if isinstance(exc, ftplib.error_temp):
        if code == "452":
            return DestinationError(f"{what}: {text}")
        return EndpointUnavailable(f"{what}: the server asked to try again later ({text})")
    if isinstance(exc, ftplib.error_reply | ftplib.error_proto):
        return DestinationError(f"{what}: unexpected reply {text}")
    if isinstance(exc, ssl.SSLCertVerificationError):
        return CertificateError(f"{what}: {exc.verify_message}")
    if isinstance(exc, ssl.SSLError):
        return EndpointUnavailable(f"{what}: TLS failed ({exc.reason or exc})")
    if isinstance(exc, TimeoutError):
        return EndpointUnavailable(f"{what}: timed out")
    if isinstance(exc, OSError | EOFError):
        detail = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        return EndpointUnavailable(f"{what}: {detail}; check the host and port, and that the "
                                   "server is up")
    return DestinationError(f"{what}: {exc!r}")

