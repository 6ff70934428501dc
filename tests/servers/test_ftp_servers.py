"""Self-tests for the FTP/FTPS servers the FTP adapter is tested and demoed against.

* ``tests/servers/proftpd.py``: a real ProFTPD (explicit FTPS port + plain FTP port);
* ``fileferry.sandbox.ftps.SandboxFtpServer``: pyftpdlib in a thread (FTP, FTPS, implicit FTPS);
* ``fileferry.sandbox.tls.make_test_pki``: the certificates both use.

The client is Python's ``ftplib`` with one addition: data connections resume the
control connection's TLS session, which ProFTPD (like most real servers) requires.
"""

from __future__ import annotations

import contextlib
import dataclasses
import ftplib
import hashlib
import io
import os
import secrets
import socket
import ssl
import threading
import zlib
from pathlib import Path

import pytest

from fileferry.sandbox.ftps import SandboxFtpServer
from fileferry.sandbox.tls import TestPki
from tests.servers.proftpd import MODULE_DIR, ProftpdServer, proftpd_binary, start_proftpd

TIMEOUT = 15.0


class ReuseSessionFtpTls(ftplib.FTP_TLS):
    """``FTP_TLS`` whose data connections resume the control connection's TLS session."""

    def ntransfercmd(self, cmd: str,
                     rest: int | str | None = None) -> tuple[socket.socket, int | None]:
        conn, size = ftplib.FTP.ntransfercmd(self, cmd, rest)
        if self._prot_p:  # type: ignore[attr-defined]
            assert isinstance(self.sock, ssl.SSLSocket)
            conn = self.context.wrap_socket(conn, server_hostname=self.host,
                                            session=self.sock.session)
            self.last_data_session_reused = conn.session_reused
        return conn, size

    last_data_session_reused: bool | None = None


class ImplicitFtpTls(ReuseSessionFtpTls):
    """Implicit FTPS: TLS from the first byte of the control connection."""

    def connect(self, host: str = "", port: int = 0, timeout: float = -999,
                source_address: tuple[str, int] | None = None) -> str:
        if host:
            self.host = host
        if port > 0:
            self.port = port
        if timeout != -999:
            self.timeout = timeout
        sock = socket.create_connection((self.host, self.port), self.timeout)
        self.af = sock.family
        self.sock = self.context.wrap_socket(sock, server_hostname=self.host)
        self.file = self.sock.makefile("r", encoding=self.encoding)
        self.welcome = self.getresp()
        return self.welcome


def _context(pki: TestPki) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(pki.ca_file))


def _ftps(pki: TestPki, port: int, username: str, password: str) -> ReuseSessionFtpTls:
    """Logged in over explicit FTPS (AUTH TLS), data channel protected (PROT P)."""
    ftp = ReuseSessionFtpTls(context=_context(pki), timeout=TIMEOUT)
    ftp.connect("127.0.0.1", port)
    ftp.auth()
    ftp.login(username, password)
    ftp.prot_p()
    return ftp


def _ftp(port: int, username: str, password: str) -> ftplib.FTP:
    ftp = ftplib.FTP(timeout=TIMEOUT)
    ftp.connect("127.0.0.1", port)
    ftp.login(username, password)
    return ftp


def _retr(ftp: ftplib.FTP, path: str) -> bytes:
    out = io.BytesIO()
    ftp.retrbinary(f"RETR {path}", out.write)
    return out.getvalue()


def _feat(ftp: ftplib.FTP) -> set[str]:
    lines = ftp.sendcmd("FEAT").splitlines()[1:-1]
    return {line.strip() for line in lines}


def _last_line(reply: str) -> str:
    return reply.splitlines()[-1]


# --- the PKI -----------------------------------------------------------------------------


def test_pki_files_and_fingerprint(pki: TestPki) -> None:
    for path in (pki.ca_file, pki.cert_file, pki.untrusted_cert_file, pki.wrong_name_cert_file):
        assert path.read_text().startswith("-----BEGIN CERTIFICATE-----")
    for path in (pki.key_file, pki.untrusted_key_file, pki.wrong_name_key_file):
        assert path.read_text().startswith("-----BEGIN PRIVATE KEY-----")  # unencrypted
    der = ssl.PEM_cert_to_DER_cert(pki.cert_file.read_text())
    assert pki.fingerprint == ":".join(f"{b:02X}" for b in hashlib.sha256(der).digest())


# --- ProFTPD -----------------------------------------------------------------------------


def test_proftpd_explicit_ftps(proftpd: ProftpdServer, pki: TestPki) -> None:
    assert proftpd.host == "127.0.0.1"
    data = secrets.token_bytes(300_000)
    with _ftps(pki, proftpd.port, proftpd.username, proftpd.password) as ftp:
        assert isinstance(ftp.sock, ssl.SSLSocket)
        assert ftp.sock.version() in ("TLSv1.2", "TLSv1.3")
        peer = ftp.sock.getpeercert(binary_form=True)
        assert peer is not None
        assert hashlib.sha256(peer).hexdigest() == pki.fingerprint.replace(":", "").lower()
        assert ftp.pwd() == "/"

        ftp.storbinary("STOR upload.bin", io.BytesIO(data))
        assert ftp.last_data_session_reused is True
        assert (proftpd.root / "upload.bin").read_bytes() == data
        assert ftp.size("upload.bin") == len(data)
        assert _retr(ftp, "upload.bin") == data

        feat = _feat(ftp)
        assert {"XMD5", "XSHA256", "AUTH TLS", "PBSZ", "PROT", "SIZE", "MFMT"} <= feat
        assert "HASH CRC32;MD5;SHA-1*;SHA-256;SHA-512;" in feat

        # mod_digest: "250-Computing MD5 digest" then "250 <UPPERCASE HEX>".
        reply = ftp.sendcmd("XMD5 upload.bin")
        assert _last_line(reply) == f"250 {hashlib.md5(data).hexdigest().upper()}"
        reply = ftp.sendcmd("XSHA256 /upload.bin")
        assert _last_line(reply) == f"250 {hashlib.sha256(data).hexdigest().upper()}"
        assert ftp.sendcmd("OPTS HASH SHA-256") == "200 SHA-256"
        reply = ftp.sendcmd("HASH upload.bin")
        sha256 = hashlib.sha256(data).hexdigest()
        assert _last_line(reply) == f"213 SHA-256 0-{len(data)} {sha256} upload.bin"
        # XMD5 with a byte range: start, end.
        reply = ftp.sendcmd("XMD5 upload.bin 0 1000")
        assert _last_line(reply) == f"250 {hashlib.md5(data[:1000]).hexdigest().upper()}"

        # RNFR/RNTO, also over an existing file (which it replaces).
        ftp.storbinary("STOR other.bin", io.BytesIO(b"other"))
        ftp.rename("upload.bin", "renamed.bin")
        assert not (proftpd.root / "upload.bin").exists()
        ftp.rename("renamed.bin", "other.bin")
        assert (proftpd.root / "other.bin").read_bytes() == data
        ftp.delete("other.bin")

        # The read-only directory: readable, not writable.
        assert [name.rsplit("/", 1)[-1] for name in ftp.nlst("readonly")] == ["README.txt"]
        with pytest.raises(ftplib.error_perm, match=r"^550 "):
            ftp.storbinary("STOR readonly/denied.bin", io.BytesIO(b"x"))
        assert not (proftpd.readonly_dir / "denied.bin").exists()


def test_proftpd_mode_z(proftpd: ProftpdServer, pki: TestPki) -> None:
    data = b"compressible line\n" * 5000
    (proftpd.root / "z.txt").write_bytes(data)
    with _ftps(pki, proftpd.port, proftpd.username, proftpd.password) as ftp:
        assert "MODE Z" in _feat(ftp)
        ftp.voidcmd("TYPE I")
        assert ftp.sendcmd("MODE Z") == "200 OK"
        compressed = bytearray()
        with ftp.transfercmd("RETR z.txt") as conn:
            while chunk := conn.recv(65536):
                compressed += chunk
            assert isinstance(conn, ssl.SSLSocket)
            conn.unwrap()
        ftp.voidresp()
        assert len(compressed) < len(data) // 10
        assert zlib.decompress(bytes(compressed)) == data
        ftp.voidcmd("MODE S")
    (proftpd.root / "z.txt").unlink()


def test_proftpd_requires_tls_session_reuse(proftpd: ProftpdServer, pki: TestPki) -> None:
    """Plain ``ftplib.FTP_TLS`` does not resume the session: ProFTPD refuses the data link."""
    with ftplib.FTP_TLS(context=_context(pki), timeout=TIMEOUT) as ftp:
        ftp.connect("127.0.0.1", proftpd.port)
        ftp.login(proftpd.username, proftpd.password)
        ftp.prot_p()
        with pytest.raises(ftplib.error_temp, match=r"^425 "):
            try:
                ftp.storbinary("STOR no-reuse.bin", io.BytesIO(b"data"))
            except (OSError, ssl.SSLError):
                # the server dropped the data link while we were still writing to it (a
                # matter of timing): its verdict follows on the control connection
                ftp.getresp()


def test_proftpd_tls_port_refuses_plain_ftp(proftpd: ProftpdServer) -> None:
    with ftplib.FTP(timeout=TIMEOUT) as ftp:
        ftp.connect("127.0.0.1", proftpd.port)
        with pytest.raises(ftplib.error_perm, match=r"^550 SSL/TLS required"):
            ftp.login(proftpd.username, proftpd.password)


def test_proftpd_tls_port_requires_protected_data(proftpd: ProftpdServer, pki: TestPki) -> None:
    with ReuseSessionFtpTls(context=_context(pki), timeout=TIMEOUT) as ftp:
        ftp.connect("127.0.0.1", proftpd.port)
        ftp.login(proftpd.username, proftpd.password)  # AUTH TLS, but no PROT P
        with pytest.raises(ftplib.error_perm, match=r"^522 "):
            ftp.storbinary("STOR clear.bin", io.BytesIO(b"data"))


def test_proftpd_plain_port(proftpd: ProftpdServer) -> None:
    assert proftpd.plain_port is not None
    data = secrets.token_bytes(50_000)
    with _ftp(proftpd.plain_port, proftpd.username, proftpd.password) as ftp:
        assert "AUTH TLS" not in _feat(ftp)
        ftp.storbinary("STOR plain.bin", io.BytesIO(data))
        assert _retr(ftp, "plain.bin") == data
        reply = ftp.sendcmd("XMD5 plain.bin")
        assert _last_line(reply) == f"250 {hashlib.md5(data).hexdigest().upper()}"
        ftp.delete("plain.bin")


def test_proftpd_wrong_password(proftpd: ProftpdServer, pki: TestPki) -> None:
    with ReuseSessionFtpTls(context=_context(pki), timeout=TIMEOUT) as ftp:
        ftp.connect("127.0.0.1", proftpd.port)
        with pytest.raises(ftplib.error_perm, match=r"^530 "):
            ftp.login(proftpd.username, "wrong-password")


def test_proftpd_digest_cache_off(tmp_path: Path, pki: TestPki) -> None:
    """By default mod_digest may answer a re-uploaded, same-size file with its old digest
    (cache keyed on path + mtime in seconds); ``digest_cache=False`` always re-reads."""
    if proftpd_binary() is None or not (MODULE_DIR / "mod_tls.so").exists():
        pytest.skip("ProFTPD is not installed (apt-get install proftpd-core proftpd-mod-crypto)")
    if os.geteuid() != 0:
        pytest.skip("the ProFTPD helper needs root (it creates a local user)")
    server, stop = start_proftpd(tmp_path, pki, digest_cache=False)
    try:
        with _ftps(pki, server.port, server.username, server.password) as ftp:
            for content in (b"1" * 100, b"2" * 100):
                ftp.storbinary("STOR same-size.txt", io.BytesIO(content))
                reply = ftp.sendcmd("XMD5 same-size.txt")
                assert _last_line(reply) == f"250 {hashlib.md5(content).hexdigest().upper()}"
    finally:
        stop()


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3],
                         ids=["TLSv1.2", "TLSv1.3"])
@pytest.mark.parametrize("kind", ["proftpd", "sandbox"])
def test_tls_versions_resume_session_on_data(kind: str, version: ssl.TLSVersion,
                                             request: pytest.FixtureRequest, tmp_path: Path,
                                             pki: TestPki) -> None:
    context = _context(pki)
    context.minimum_version = context.maximum_version = version
    with contextlib.ExitStack() as stack:
        if kind == "proftpd":
            proftpd: ProftpdServer = request.getfixturevalue("proftpd")
            port, username, password = proftpd.port, proftpd.username, proftpd.password
        else:
            sandbox = stack.enter_context(SandboxFtpServer(tmp_path, "demo", "pw", tls=pki))
            port, username, password = sandbox.port, "demo", "pw"
        ftp = stack.enter_context(ReuseSessionFtpTls(context=context, timeout=TIMEOUT))
        ftp.connect("127.0.0.1", port)
        ftp.auth()
        ftp.login(username, password)
        ftp.prot_p()
        assert isinstance(ftp.sock, ssl.SSLSocket)
        assert ftp.sock.version() == version.name.replace("_", ".")
        for _ in range(2):
            ftp.storbinary("STOR tls.bin", io.BytesIO(b"t" * 70_000))
            assert ftp.last_data_session_reused is True
        assert _retr(ftp, "tls.bin") == b"t" * 70_000
        ftp.delete("tls.bin")


# --- pyftpdlib (the demo's stand-in) ----------------------------------------------------


_BEFORE: set[threading.Thread] = set()


@pytest.fixture(autouse=True)
def _threads_before() -> None:
    """Servers started elsewhere (the session's pyftpd) are not this test's business."""
    _BEFORE.clear()
    _BEFORE.update(threading.enumerate())


def _sandbox_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate()
            if t.name.startswith("sandbox-ftp-") and t not in _BEFORE]


def _exercise(ftp: ftplib.FTP, root: Path) -> None:
    data = secrets.token_bytes(200_000)
    ftp.mkd("dir")
    ftp.storbinary("STOR dir/file.bin", io.BytesIO(data))
    assert (root / "dir" / "file.bin").read_bytes() == data
    assert ftp.size("dir/file.bin") == len(data)
    assert _retr(ftp, "/dir/file.bin") == data
    ftp.storbinary("STOR dir/other.bin", io.BytesIO(b"other"))
    ftp.rename("dir/file.bin", "dir/other.bin")  # replaces the existing file
    assert (root / "dir" / "other.bin").read_bytes() == data
    assert ftp.nlst("dir") == ["other.bin"]
    ftp.delete("dir/other.bin")
    ftp.rmd("dir")


def test_sandbox_explicit_ftps(tmp_path: Path, pki: TestPki) -> None:
    root = tmp_path / "root"
    with SandboxFtpServer(root, "demo", "demo-pw", tls=pki) as server:
        assert server.port > 0 and server.scheme == "ftps"
        with _ftps(pki, server.port, "demo", "demo-pw") as ftp:
            assert "AUTH TLS" in _feat(ftp)
            _exercise(ftp, root)
        # TLS is required on the control and on the data channel.
        with ftplib.FTP(timeout=TIMEOUT) as plain:
            plain.connect("127.0.0.1", server.port)
            with pytest.raises(ftplib.error_perm, match=r"^550 SSL/TLS required"):
                plain.login("demo", "demo-pw")
        with ReuseSessionFtpTls(context=_context(pki), timeout=TIMEOUT) as ftp:
            ftp.connect("127.0.0.1", server.port)
            ftp.login("demo", "demo-pw")
            with pytest.raises(ftplib.error_perm, match=r"^550 SSL/TLS required"):
                ftp.storbinary("STOR clear.bin", io.BytesIO(b"x"))
        with ReuseSessionFtpTls(context=_context(pki), timeout=TIMEOUT) as ftp:
            ftp.connect("127.0.0.1", server.port)
            with pytest.raises(ftplib.error_perm, match=r"^530 "):
                ftp.login("demo", "wrong")
    assert _sandbox_threads() == []


def test_sandbox_implicit_ftps(tmp_path: Path, pki: TestPki) -> None:
    root = tmp_path / "root"
    with SandboxFtpServer(root, "demo", "demo-pw", tls=pki, implicit=True) as server:
        assert server.scheme == "ftps-implicit"
        with ImplicitFtpTls(context=_context(pki), timeout=TIMEOUT) as ftp:
            assert ftp.connect("127.0.0.1", server.port).startswith("220 ")
            ftp.login("demo", "demo-pw")
            ftp.prot_p()
            _exercise(ftp, root)
    assert _sandbox_threads() == []


def test_sandbox_plain_ftp(tmp_path: Path) -> None:
    root = tmp_path / "root"
    with SandboxFtpServer(root, "demo", "demo-pw", tls=None) as server:
        assert server.scheme == "ftp"
        with _ftp(server.port, "demo", "demo-pw") as ftp:
            assert "AUTH TLS" not in _feat(ftp)
            _exercise(ftp, root)
    assert _sandbox_threads() == []


def test_sandbox_rejects_untrusted_and_wrong_name_certificates(tmp_path: Path,
                                                                pki: TestPki) -> None:
    untrusted = dataclasses.replace(pki, cert_file=pki.untrusted_cert_file,
                                    key_file=pki.untrusted_key_file)
    wrong_name = dataclasses.replace(pki, cert_file=pki.wrong_name_cert_file,
                                     key_file=pki.wrong_name_key_file)
    for bad, reason in ((untrusted, "self-signed certificate"), (wrong_name, "mismatch")):
        with (
            SandboxFtpServer(tmp_path / "root", "demo", "pw", tls=bad) as server,
            ReuseSessionFtpTls(context=_context(pki), timeout=TIMEOUT) as ftp,
        ):
            ftp.connect("127.0.0.1", server.port)
            with pytest.raises(ssl.SSLCertVerificationError, match=reason):
                ftp.auth()


def test_sandbox_stop_with_open_connections(tmp_path: Path, pki: TestPki) -> None:
    """stop() closes logged-in sessions (TLS and plain) and leaves no thread behind."""
    server = SandboxFtpServer(tmp_path / "root", "demo", "demo-pw", tls=pki).start()
    plain_server = SandboxFtpServer(tmp_path / "root2", "demo", "demo-pw", tls=None).start()
    ftps = _ftps(pki, server.port, "demo", "demo-pw")
    ftp = _ftp(plain_server.port, "demo", "demo-pw")
    try:
        # A data connection is open (PASV accepted) when the server stops.
        ftps.sendcmd("TYPE I")
        ftps.makepasv()
        server.stop()
        plain_server.stop()
        server.stop()  # idempotent
        assert _sandbox_threads() == []
        with pytest.raises((EOFError, OSError)):
            ftps.voidcmd("NOOP")
        with pytest.raises((EOFError, OSError)):
            ftp.voidcmd("NOOP")
    finally:
        ftps.close()
        ftp.close()
    # The same object can be started again.
    with server, _ftps(pki, server.port, "demo", "demo-pw") as again:
        assert again.pwd() == "/"
