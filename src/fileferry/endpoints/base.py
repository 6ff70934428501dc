"""The two small endpoint protocols the engine is written against.

A ``Source`` can ``stat``, ``list`` and ``open_range``; a ``Destination`` can
``stat``, ``open_write``, ``rename``, ``remove``, ``digest`` and ``open_read``;
a ``Writer`` can ``write``, ``commit`` and ``abort``. What an endpoint can do
is declared in ``Capabilities``; the engine asks the capability and never the
endpoint's type.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

__all__ = ["ByteStream", "Capabilities", "Destination", "HashName", "ObjectInfo", "Source",
           "Writer"]

HashName = Literal["md5", "sha256"]


@dataclass(frozen=True)
class Capabilities:
    """What an endpoint can do, declared once it is connected."""

    hashes: frozenset[HashName] = frozenset()
    """Digests the server computes itself (cheaper than reading the file back)."""
    supports_offset_writes: bool = False
    """``open_write(path, offset>0)`` writes at that offset (parallel ranges)."""
    supports_atomic_rename: bool = False
    """``rename(..., overwrite=True)`` replaces the target in one step."""
    supports_resume: bool = False
    """A write can continue an existing partial file."""
    supports_readback: bool = True
    """``open_read`` works, so a file can be read back and hashed."""
    range_hashes: bool = False
    """``digest_ranges`` works: MD5s of byte ranges and the whole file's SHA-256."""


@dataclass(frozen=True)
class ObjectInfo:
    """What an endpoint knows of one file or object."""

    path: str
    size: int
    checksums: dict[str, str] = field(default_factory=dict)
    """Hex digests the store holds (``md5`` from a single-part ETag, ``sha256`` ...)."""


class ByteStream(Protocol):
    """An open read: what the store said of the object, then its bytes in order."""

    info: ObjectInfo

    def __aiter__(self) -> AsyncIterator[bytes]: ...


@runtime_checkable
class Source(Protocol):
    """Somewhere objects are read from (S3)."""

    async def stat(self, bucket: str, key: str) -> ObjectInfo:
        """The object's size and stored checksums. Raises ``SourceNotFound`` if absent."""
        ...

    async def list(self, bucket: str, prefix: str) -> list[ObjectInfo]:
        """Every object under ``prefix`` (``path`` is the full key), in key order.

        Folder markers (keys ending in ``/``) are skipped. An empty result is
        not an error here; the caller decides.
        """
        ...

    async def open_range(self, bucket: str, key: str, start: int = 0,
                         end: int | None = None) -> ByteStream:
        """Open bytes ``[start, end)`` (``end`` None: to the end of the object).

        Chunks arrive in order with bounded read-ahead. Raises
        ``SourceNotFound`` if the object is gone. The stream's ``info`` holds
        the checksums the store returned with the data (whole objects only).
        """
        ...


@runtime_checkable
class Writer(Protocol):
    """An open file at the destination being written."""

    @property
    def acknowledged(self) -> int:
        """Bytes from the start offset the destination has confirmed, in order. ``write``
        may return before its bytes are confirmed (pipelining); resuming trusts only these."""
        ...

    async def write(self, data: bytes) -> None:
        """Append ``data`` at the current offset (raises an earlier write's failure)."""
        ...

    async def commit(self) -> None:
        """Flush and close; the bytes are on the server when this returns."""
        ...

    async def abort(self) -> None:
        """Close without caring about errors; the caller removes the file."""
        ...


@runtime_checkable
class Destination(Protocol):
    """Somewhere files are delivered (SFTP, FTP, FTPS)."""

    capabilities: Capabilities
    root: str
    """The destination root, absolute on the server once connected."""

    async def stat(self, path: str) -> ObjectInfo | None:
        """The file at ``path``, or None if there is none."""
        ...

    async def makedirs(self, path: str) -> None:
        """Create ``path`` and its parents; existing directories are fine."""
        ...

    async def open_write(self, path: str, offset: int = 0, *, truncate: bool = True,
                         size: int | None = None, digest: HashName | None = None) -> Writer:
        """Open ``path`` for writing. ``offset`` 0 creates or truncates.

        A non-zero ``offset`` (or ``truncate=False``) needs
        ``supports_offset_writes``, requires the file to exist and keeps its
        bytes; past the end of the file the gap reads as zeros. ``size``, the
        whole file's when known, lets an endpoint choose how to carry it.
        ``digest`` (one of ``capabilities.hashes``) announces that ``digest``
        will be asked for once the file is written: an endpoint may compute
        it while the file is being written.
        """
        ...

    async def rename(self, src: str, dst: str, overwrite: bool) -> None:
        """Move ``src`` to ``dst``. Without ``overwrite`` an existing ``dst``
        raises ``TargetExists``; with it the old file is replaced (atomically
        where ``supports_atomic_rename``)."""
        ...

    async def remove(self, path: str) -> None:
        """Delete ``path``; a missing file is not an error."""
        ...

    async def digest(self, path: str, algorithm: HashName) -> str:
        """The server's own hex digest of ``path`` (only for ``capabilities.hashes``)."""
        ...

    async def digest_ranges(self, path: str,
                            ranges: list[tuple[int, int]]) -> tuple[list[str], str]:
        """MD5 of each ``[start, end)`` and the whole file's SHA-256 (``range_hashes`` only)."""
        ...

    def open_read(self, path: str) -> AsyncIterator[bytes]:
        """Stream the file's bytes back (for read-back verification)."""
        ...

    async def close(self) -> None:
        """Log out and close the connection; safe to call twice."""
        ...
