"""OpenPGP encryption in the byte stream: GnuPG through pipes, no temporary file.

Why GnuPG as a subprocess: it is the OpenPGP implementation partners test
against and Debian keeps it patched; python-gnupg buffers the whole output
in memory or a file, PGPy is unmaintained and in-memory, and pysequoia
encrypts whole byte strings. ``gpg`` reading stdin and writing stdout streams
in constant memory (the pipes' buffers plus one chunk).

``EncryptingSource`` wraps a ``Source``: each ``open_range`` of a whole object
starts one ``gpg --encrypt`` whose stdin is fed from the S3 stream (hashing
the plaintext and checking its size and S3 checksum on the way) and whose
stdout is the stream the copy path hashes, sends and verifies. Ciphertext is
new on every run (a random session key), so an encrypted file is never
resumed or sent in ranges: every attempt starts from zero. Keys live in a
temporary ``GNUPGHOME`` per transfer task, removed afterwards (its agent
killed); a passphrase goes to gpg through a pipe, never argv or disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from types import TracebackType

from fileferry.automation.settings import PgpSettings
from fileferry.endpoints.base import ByteStream, ObjectInfo, Source
from fileferry.errors import ChecksumMismatch, ConfigError, SourceError, TransferFailed
from fileferry.transfer.hashing import Digests

__all__ = ["EncryptingSource", "PgpKeys", "gpg_binary"]

OUT_CHUNK = 1024 * 1024
STDERR_LIMIT = 16 * 1024
Noter = Callable[[str, Digests], Awaitable[None]]
SecretReader = Callable[[str, str], str]
"""(secret reference, config key) -> the secret's text (``identity.secrets.read_secret_text``)."""


def gpg_binary() -> str:
    found = shutil.which("gpg")
    if found is None:
        raise ConfigError("encryption needs GnuPG's gpg on PATH (Debian: apt-get install gnupg)")
    return found


async def _gpg(home: str, *args: str, stdin: bytes = b"") -> tuple[int, bytes, bytes]:
    proc = await asyncio.create_subprocess_exec(
        gpg_binary(), "--homedir", home, "--batch", "--no-tty", "--pinentry-mode", "loopback",
        *args, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate(stdin)
    return proc.returncode or 0, out, err


def _fingerprints(listing: bytes, record: str) -> list[str]:
    """Primary-key fingerprints from ``--with-colons`` output (``pub`` or ``sec``)."""
    found, want = [], False
    for line in listing.decode(errors="replace").splitlines():
        kind = line.split(":", 1)[0]
        if kind in ("pub", "sec", "sub", "ssb"):
            want = kind == record
        elif kind == "fpr" and want:
            found.append(line.split(":")[9])
            want = False
    return found


class PgpKeys:
    """A temporary keyring holding the partner's public key (and our signing key)."""

    def __init__(self, settings: PgpSettings, where: str,
                 read_secret: SecretReader | None = None) -> None:
        self.settings = settings
        self.where = where
        self._read_secret = read_secret
        self.home = ""
        self.recipients: list[str] = []
        self.signer: str | None = None

    async def __aenter__(self) -> PgpKeys:
        self.home = tempfile.mkdtemp(prefix="ff-gpg-")  # short: the agent socket lives here
        try:
            await self._load()
        except BaseException:
            await self._remove()
            raise
        return self

    async def __aexit__(self, et: type[BaseException] | None, ev: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self._remove()

    async def _text(self, inline: str | None, path: Path | None, secret: str | None,
                    what: str) -> bytes:
        if inline is not None:
            return inline.encode()
        if secret is not None:
            if self._read_secret is None:
                raise ConfigError(f"{self.where}.{what}_secret: no Secrets Manager access "
                                  "here; give the key inline or as a file")
            return (await asyncio.to_thread(self._read_secret, secret,
                                            f"{self.where}.{what}_secret")).encode()
        assert path is not None
        try:
            return path.read_bytes()
        except OSError as exc:
            raise ConfigError(f"{self.where}.{what}_file: cannot read {path}: "
                              f"{exc.strerror}") from None

    async def _import(self, data: bytes, what: str, record: str) -> list[str]:
        _, _, err = await _gpg(self.home, "--import", stdin=data)
        listing = "--list-secret-keys" if record == "sec" else "--list-keys"
        _, out, _ = await _gpg(self.home, "--with-colons", listing)
        found = _fingerprints(out, record)
        if not found:
            raise ConfigError(f"{self.where}.{what}: GnuPG imported no usable key: "
                              f"{err.decode(errors='replace').strip()[:300]}")
        return found

    async def _load(self) -> None:
        s = self.settings
        self.recipients = await self._import(
            await self._text(s.recipient_key, s.recipient_key_file, s.recipient_key_secret,
                             "recipient_key"), "recipient_key", "pub")
        if s.signs:
            secret = s.signing_key.get_secret_value() if s.signing_key else None
            self.signer = (await self._import(
                await self._text(secret, s.signing_key_file, s.signing_key_secret,
                                 "signing_key"), "signing_key", "sec"))[0]

    async def _remove(self) -> None:
        if not self.home:
            return
        gpgconf = shutil.which("gpgconf")
        if gpgconf is not None:
            proc = await asyncio.create_subprocess_exec(
                gpgconf, "--homedir", self.home, "--kill", "all",
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
            await proc.wait()
        await asyncio.to_thread(shutil.rmtree, self.home, True)
        self.home = ""

    def encrypt_args(self, passphrase_fd: int | None) -> list[str]:
        args = ["--homedir", self.home, "--batch", "--no-tty", "--quiet", "--trust-model",
                "always", "--no-auto-check-trustdb", "--encrypt", "--output", "-"]
        for fingerprint in self.recipients:
            args += ["--recipient", fingerprint]
        if self.settings.armor:
            args.append("--armor")
        if self.signer is not None:
            args += ["--sign", "--local-user", self.signer, "--pinentry-mode", "loopback"]
            if passphrase_fd is not None:
                args += ["--passphrase-fd", str(passphrase_fd)]
        return args


async def _drain(stream: asyncio.StreamReader) -> bytes:
    """Read to the end (gpg must never block on a full stderr pipe); keep the start."""
    kept = bytearray()
    while data := await stream.read(65536):
        if len(kept) < STDERR_LIMIT:
            kept += data[:STDERR_LIMIT - len(kept)]
    return bytes(kept)


class EncryptedStream:
    """Ciphertext of one object; ``info.size`` is the plaintext's (the ciphertext's size is
    known only at the end)."""

    def __init__(self, keys: PgpKeys, inner: ByteStream, source: str, note: Noter) -> None:
        self.info = ObjectInfo(inner.info.path, inner.info.size)
        self._keys = keys
        self._inner = inner
        self._source = source
        self._note = note
        self.plaintext = Digests()

    async def _start(self) -> asyncio.subprocess.Process:
        passphrase = self._keys.settings.signing_passphrase
        read_fd = None
        if passphrase is not None:
            read_fd, write_fd = os.pipe()
            os.write(write_fd, passphrase.get_secret_value().encode() + b"\n")
            os.close(write_fd)
        try:
            return await asyncio.create_subprocess_exec(
                gpg_binary(), *self._keys.encrypt_args(read_fd),
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE, pass_fds=(read_fd,) if read_fd else ())
        finally:
            if read_fd is not None:
                os.close(read_fd)

    async def _feed(self, proc: asyncio.subprocess.Process) -> None:
        """Plaintext into gpg; the S3 checks before gpg sees the end of its input."""
        assert proc.stdin is not None
        try:
            async for chunk in self._inner:
                await self.plaintext.update_async(chunk)
                proc.stdin.write(chunk)
                await proc.stdin.drain()
            expected = self._inner.info.checksums.get("md5")
            if self.plaintext.size != self._inner.info.size:
                raise SourceError(f"{self._source}: S3 sent {self.plaintext.size} bytes, "
                                  f"expected {self._inner.info.size}")
            if expected and expected != self.plaintext.md5:
                raise ChecksumMismatch(f"{self._source}: md5 of the streamed bytes is "
                                       f"{self.plaintext.md5} but S3 holds {expected}")
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()  # gpg must not finish a ciphertext of partial input
            raise
        proc.stdin.close()

    async def __aiter__(self) -> AsyncIterator[bytes]:
        proc = await self._start()
        assert proc.stdout is not None and proc.stderr is not None
        feeder = asyncio.create_task(self._feed(proc))
        errors = asyncio.create_task(_drain(proc.stderr))
        try:
            pending = bytearray()
            while data := await proc.stdout.read(OUT_CHUNK):
                pending += data
                if len(pending) >= OUT_CHUNK:
                    yield bytes(pending)
                    pending.clear()
            await feeder  # a source error wins over gpg's complaint about it
            code = await proc.wait()
            if code != 0:
                text = (await errors).decode(errors="replace").strip()[:500]
                error = ConfigError if "public key" in text else TransferFailed
                raise error(f"{self._source}: gpg --encrypt failed ({code}): {text}")
            await self._note(self._source, self.plaintext)
            if pending:
                yield bytes(pending)
        finally:
            for task in (feeder, errors):
                task.cancel()
            await asyncio.gather(feeder, errors, return_exceptions=True)
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()

    async def aclose(self) -> None:
        close = getattr(self._inner, "aclose", None)
        if close is not None:
            await close()


class EncryptingSource:
    """A ``Source`` whose whole-object reads are encrypted; ``note`` gets each object's
    plaintext digests once its ciphertext is complete."""

    def __init__(self, inner: Source, keys: PgpKeys, note: Noter) -> None:
        self._inner = inner
        self._keys = keys
        self._note = note

    async def stat(self, bucket: str, key: str) -> ObjectInfo:
        return await self._inner.stat(bucket, key)

    async def list(self, bucket: str, prefix: str) -> list[ObjectInfo]:
        return await self._inner.list(bucket, prefix)

    async def open_range(self, bucket: str, key: str, start: int = 0,
                         end: int | None = None) -> ByteStream:
        """Whole objects only: ciphertext cannot be resumed or split into ranges."""
        if start != 0 or end is not None:
            raise TransferFailed(f"s3://{bucket}/{key}: an encrypted file is always sent "
                                 "whole, from the start")
        inner = await self._inner.open_range(bucket, key)
        return EncryptedStream(self._keys, inner, f"s3://{bucket}/{key}", self._note)
