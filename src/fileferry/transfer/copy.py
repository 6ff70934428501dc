"""One file: stream under a temporary name, hash, verify, rename into place.

A file that fails leaves nothing under its final name, and its temporary
file is removed. The temporary name is a dot-file in the target directory so
that partner jobs globbing ``*.csv`` never pick up a partial file.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import posixpath

from fileferry.endpoints.base import Destination, Source, Writer
from fileferry.errors import (
    ChecksumMismatch,
    DestinationError,
    FileFerryError,
    SourceError,
    TargetExists,
    VerificationFailed,
)
from fileferry.models import FilePlan, FileResult, VerifiedBy
from fileferry.transfer.hashing import Digests, digest_stream
from fileferry.transfer.progress import ProgressSubscriber

__all__ = ["alternative_name", "copy_file", "place", "temp_name", "verify_file"]

log = logging.getLogger(__name__)
MAX_RENAME_TRIES = 1000


def temp_name(final: str, tag: str) -> str:
    directory, base = posixpath.split(final)
    return posixpath.join(directory, f".{base[:200]}.{tag}.fftmp")


def alternative_name(final: str, n: int) -> str:
    """``a/report.tar.gz`` -> ``a/report-1.tar.gz`` (hidden files keep their dot)."""
    directory, base = posixpath.split(final)
    dot = base.find(".", 1)
    stem, ext = (base, "") if dot < 0 else (base[:dot], base[dot:])
    return posixpath.join(directory, f"{stem}-{n}{ext}")


def _check_source(plan: FilePlan, expected: dict[str, str], digests: Digests,
                  size: int) -> None:
    if digests.size != size:
        raise SourceError(f"{plan.source}: S3 sent {digests.size} bytes, expected {size}")
    for algo, got in (("md5", digests.md5), ("sha256", digests.sha256)):
        want = expected.get(algo)
        if want and want != got:
            raise ChecksumMismatch(f"{plan.source}: {algo} of the streamed bytes is {got} but "
                                   f"S3 holds {want}; the copy was discarded")


async def verify_file(dest: Destination, path: str, digests: Digests,
                      mode: str) -> VerifiedBy:
    """Prove the file at ``path`` holds the streamed bytes; return how it was proved."""
    if mode == "none":
        return "none"
    if mode == "size":
        info = await dest.stat(path)
        if info is None or info.size != digests.size:
            got = "no file" if info is None else f"{info.size} bytes"
            raise VerificationFailed(f"{path}: expected {digests.size} bytes, found {got}")
        return "size"
    if mode == "auto":
        for algo, name in (("md5", "server-md5"), ("sha256", "server-sha256")):
            if algo not in dest.capabilities.hashes:
                continue
            want = digests.md5 if algo == "md5" else digests.sha256
            try:
                got = await dest.digest(path, algo)
            except DestinationError as exc:
                log.warning("server-side %s failed (%s); reading the file back instead", algo,
                            exc)
                break
            if got != want:
                raise VerificationFailed(f"{path}: the server's {algo} is {got}, the bytes sent "
                                         f"hash to {want}")
            return name  # type: ignore[return-value]
    back = await digest_stream(dest.open_read(path))
    if back.sha256 != digests.sha256 or back.size != digests.size:
        raise VerificationFailed(f"{path}: reading back gave {back.size} bytes with sha256 "
                                 f"{back.sha256}, sent {digests.size} bytes with "
                                 f"{digests.sha256}")
    return "readback-sha256"


async def place(dest: Destination, tmp: str, final: str, on_conflict: str) -> str:
    """Rename ``tmp`` into place following ``on_conflict``; return the final path."""
    if on_conflict == "overwrite":
        await dest.rename(tmp, final, overwrite=True)
        return final
    try:
        await dest.rename(tmp, final, overwrite=False)
        return final
    except TargetExists:
        if on_conflict == "fail":
            raise TargetExists(f"{final} already exists on the destination and on_conflict is "
                               "'fail'; set on_conflict: overwrite or rename, or remove it"
                               ) from None
    for n in range(1, MAX_RENAME_TRIES + 1):
        candidate = alternative_name(final, n)
        try:
            await dest.rename(tmp, candidate, overwrite=False)
            return candidate
        except TargetExists:
            continue
    raise TargetExists(f"no free name for {final} after {MAX_RENAME_TRIES} tries")


async def _cleanup(dest: Destination, writer: Writer | None, tmp: str) -> None:
    try:
        if writer is not None:
            await writer.abort()
        await asyncio.wait_for(dest.remove(tmp), 30)
    except (FileFerryError, TimeoutError) as exc:
        log.warning("could not remove temporary file %s: %s", tmp, exc)


async def copy_file(source: Source, dest: Destination, plan: FilePlan, *, verify: str,
                    on_conflict: str, tag: str, progress: ProgressSubscriber) -> FileResult:
    """Deliver one object; raise a ``FileFerryError`` with nothing left behind on failure."""
    tmp = temp_name(plan.destination, tag)
    writer: Writer | None = None
    progress.file_started(plan)
    try:
        stream = await source.open_range(plan.bucket, plan.key)
        expected = {k: v for k, v in (("md5", plan.source_md5), ("sha256", plan.source_sha256))
                    if v}
        expected.update(stream.info.checksums)
        writer = await dest.open_write(tmp)
        digests = Digests()
        async for chunk in stream:
            await asyncio.gather(writer.write(chunk), digests.update_async(chunk))
            progress.bytes_moved(plan, len(chunk))
        await writer.commit()
        writer = None
        _check_source(plan, expected, digests, stream.info.size)
        verified_by = await verify_file(dest, tmp, digests, verify)
        final = await place(dest, tmp, plan.destination, on_conflict)
    except BaseException:
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.shield(_cleanup(dest, writer, tmp))
        raise
    result = FileResult(source=plan.source, destination=final, size=digests.size,
                        sha256=digests.sha256, md5=digests.md5, verified_by=verified_by,
                        status="DELIVERED")
    progress.file_finished(result)
    return result
