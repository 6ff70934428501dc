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
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from tenacity import RetryCallState

from fileferry.endpoints.base import ByteStream, Destination, HashName, Source, Writer
from fileferry.errors import (
    ChecksumMismatch,
    DestinationError,
    FileFerryError,
    SourceError,
    TargetExists,
    VerificationFailed,
)
from fileferry.models import FilePlan, FileResult, VerifiedBy
from fileferry.transfer.checkpoints import Boundaries, ResumeState, Snapshots, hash_after
from fileferry.transfer.hashing import Digests, digest_stream
from fileferry.transfer.progress import ProgressSubscriber
from fileferry.transfer.retry import RetryPolicy
from fileferry.transfer.throttle import ThrottledWriter, TokenBucket

__all__ = ["CopyOptions", "Paused", "ResumeState", "alternative_name", "copy_file", "place",
           "proves_md5", "remove_quietly", "temp_name", "verify_file"]

log = logging.getLogger(__name__)
MAX_RENAME_TRIES = 1000
SETTLE_INTERVAL = 0.25  # seconds between looks at a partial file the server may still grow
SETTLE_MAX = 10.0


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
    """The streamed bytes against what S3 holds (an MD5 not computed is proved later)."""
    if digests.size != size:
        raise SourceError(f"{plan.source}: S3 sent {digests.size} bytes, expected {size}")
    for algo, got in (("md5", digests.md5), ("sha256", digests.sha256)):
        want = expected.get(algo)
        if want and got is not None and want != got:
            raise ChecksumMismatch(f"{plan.source}: {algo} of the streamed bytes is {got} but "
                                   f"S3 holds {want}; the copy was discarded")


def proves_md5(dest: Destination, mode: str, expected: dict[str, str]) -> bool:
    """Whether the destination's own MD5 will be compared with S3's, so that the client
    need not hash MD5 at all: the server's ``md5sum`` of the file equal to the ETag proves
    the file is the object (what rclone checks too); SHA-256 is still computed for the
    record. Only where ``verify: auto`` asks the server for MD5 first."""
    return mode == "auto" and "md5" in dest.capabilities.hashes and "md5" in expected


async def _server_digest(dest: Destination, path: str, digests: Digests,
                         source_md5: str | None) -> VerifiedBy | None:
    """The server's MD5 (else SHA-256) against the stream's; None: read the file back."""
    for algo, name in (("md5", "server-md5"), ("sha256", "server-sha256")):
        if algo not in dest.capabilities.hashes:
            continue
        want = (digests.md5 or source_md5) if algo == "md5" else digests.sha256
        try:
            got = await dest.digest(path, algo)
        except DestinationError as exc:
            log.warning("server-side %s failed (%s); reading the file back instead", algo, exc)
            return None
        if got != want and algo == "md5" and digests.md5 is None:
            raise ChecksumMismatch(f"{path}: the server's md5 is {got} but S3 holds {want}; "
                                   "the bytes were damaged on the way; the copy was discarded")
        if got != want:
            raise VerificationFailed(f"{path}: the server's {algo} is {got}, the bytes sent "
                                     f"hash to {want}")
        return name  # type: ignore[return-value]
    return None


async def verify_file(dest: Destination, path: str, digests: Digests,
                      mode: str, source_md5: str | None = None) -> VerifiedBy:
    """Prove the file at ``path`` holds the streamed bytes; return how it was proved.

    When MD5 was not hashed while streaming (``digests.md5`` is None),
    ``source_md5`` (S3's) stands in for it: a difference means the bytes that
    reached the server are not the object (``ChecksumMismatch``), and a
    read-back also checks MD5 against it.
    """
    if mode == "none":
        return "none"
    if mode == "size":
        info = await dest.stat(path)
        if info is None or info.size != digests.size:
            got = "no file" if info is None else f"{info.size} bytes"
            raise VerificationFailed(f"{path}: expected {digests.size} bytes, found {got}")
        return "size"
    if mode == "auto":
        proved = await _server_digest(dest, path, digests, source_md5)
        if proved is not None:
            return proved
    back = await digest_stream(dest.open_read(path))
    if back.sha256 != digests.sha256 or back.size != digests.size:
        raise VerificationFailed(f"{path}: reading back gave {back.size} bytes with sha256 "
                                 f"{back.sha256}, sent {digests.size} bytes with "
                                 f"{digests.sha256}")
    if digests.md5 is None and source_md5 and back.md5 != source_md5:
        raise ChecksumMismatch(f"{path}: its md5 is {back.md5} but S3 holds {source_md5}; "
                               "the copy was discarded")
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


@dataclass
class CopyOptions:
    verify: str = "auto"
    on_conflict: str = "fail"
    tag: str = "tmp"
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    bucket: TokenBucket | None = None
    resume_existing: bool = False
    """Continue a temporary file an earlier process left (after a crash): its bytes are
    read back to rebuild the digests, then only the rest is sent."""
    transformed: bool = False
    """The source stream is transformed (PGP-encrypted): its size is unknown in advance,
    it differs on every read (never resumed: each attempt starts from zero), and the
    source's size and checksums are checked by the transform itself."""
    out_of_time: Callable[[], bool] | None = None
    """Asked after each chunk is written (a time budget, e.g. Lambda's 15 minutes): once it
    says yes, the bytes so far are committed and ``copy_file`` raises ``Paused``."""


class Paused(Exception):
    """``CopyOptions.out_of_time`` stopped the copy at a chunk boundary.

    Every byte before ``offset`` is committed at the destination under the
    temporary name (kept, not removed) and hashed into the ``ResumeState``
    passed to ``copy_file``; a later call continues from there.
    """

    def __init__(self, offset: int) -> None:
        super().__init__(f"paused at byte {offset}")
        self.offset = offset


async def remove_quietly(dest: Destination, tmp: str) -> None:
    try:
        await asyncio.wait_for(dest.remove(tmp), 30)
    except (FileFerryError, TimeoutError) as exc:
        log.warning("could not remove temporary file %s (it never carries a final name): %s",
                    tmp, exc)


async def _adopt_existing(dest: Destination, tmp: str, state: ResumeState) -> int:
    caps = dest.capabilities
    info = await dest.stat(tmp) if caps.supports_resume and caps.supports_readback else None
    if info is None or info.size == 0:
        return 0
    state.digests = Digests()
    async for chunk in dest.open_read(tmp):
        await state.digests.update_async(chunk)
    state.checkpoint()
    log.info("resuming %s from %d bytes left by an earlier attempt", tmp, state.digests.size)
    return state.digests.size


async def _resume_point(dest: Destination, tmp: str, state: ResumeState,
                        resume_existing: bool = False, transformed: bool = False) -> int:
    if not state.started:
        return await _adopt_existing(dest, tmp, state) if resume_existing \
            and not transformed else 0
    if state.sent:  # only verifying or renaming failed: nothing to send again
        return state.digests.size
    if not dest.capabilities.supports_resume or transformed:
        state.reset()
        return 0
    return state.resume_from(await _settled_size(dest, tmp))


async def _settled_size(dest: Destination, tmp: str) -> int:
    """The partial file's size once the server has stopped growing it.

    A server that acknowledges no single write (FTP: one stream per STOR) may still be
    storing what a broken data connection delivered when we reconnect: resuming at the
    size it shows then would leave two writers on one file. Wait until two looks agree
    (at most :data:`SETTLE_MAX` seconds)."""
    info = await dest.stat(tmp)
    size = info.size if info else 0
    if dest.capabilities.supports_offset_writes:
        return size  # every write was acknowledged: the size is final
    deadline = time.monotonic() + SETTLE_MAX
    while time.monotonic() < deadline:
        await asyncio.sleep(SETTLE_INTERVAL)
        info = await dest.stat(tmp)
        now = info.size if info else 0
        if now == size:
            break
        size = now
    return size


async def _close_stream(stream: ByteStream) -> None:
    """Release a GET that will not be read (``aclose`` where the source offers it)."""
    close = getattr(stream, "aclose", None)
    if close is not None:
        with contextlib.suppress(Exception):
            await close()


async def _open_both(source: Source, dest: Destination, plan: FilePlan, tmp: str,
                     offset: int, digest: HashName | None = None) -> tuple[Writer, ByteStream]:
    """Open the temporary file and the S3 GET at the same time (one round trip, not two).

    If either fails, the other is closed again before the error propagates: a
    refusal at the destination leaves no S3 GET open, a failed GET leaves no
    file open (the caller removes the temporary file, as before).
    """
    opening = asyncio.ensure_future(dest.open_write(tmp, offset, size=plan.size, digest=digest))
    getting = asyncio.ensure_future(source.open_range(plan.bucket, plan.key, start=offset))
    try:
        await asyncio.wait((opening, getting))
    except BaseException:  # cancelled while waiting: let both finish, then undo them
        opening.cancel()
        getting.cancel()
        await asyncio.gather(opening, getting, return_exceptions=True)
        await _undo(opening, getting)
        raise
    if opening.exception() is None and getting.exception() is None:
        return opening.result(), getting.result()
    await _undo(opening, getting)
    error = opening.exception() or getting.exception()  # the destination's error first
    assert error is not None
    raise error


async def _undo(opening: asyncio.Future[Writer], getting: asyncio.Future[ByteStream]) -> None:
    if opening.done() and not opening.cancelled() and opening.exception() is None:
        await opening.result().abort()
    if getting.done() and not getting.cancelled() and getting.exception() is None:
        await _close_stream(getting.result())


async def _stream(stream: ByteStream, writer: Writer, plan: FilePlan, state: ResumeState,
                  progress: ProgressSubscriber,
                  out_of_time: Callable[[], bool] | None = None) -> None:
    """Write every chunk while hashing it in a worker thread, hashing one chunk behind.

    The SHA-256/MD5 of chunk *n* may still run while chunk *n+1* is written,
    so neither waits for the other. A checkpoint (the digests every
    ``hashing.STEP`` bytes) is recorded only once the destination has
    acknowledged every byte before it (``writer.acknowledged``: writes may be
    pipelined) *and* the hash has reached it, so ``resume_from`` never
    continues from bytes the server did not confirm. At most two chunks are
    being hashed at once (memory stays bounded); all hashing has finished
    when this returns or raises. ``out_of_time`` is asked once each chunk is written;
    when it says yes, every hash is awaited, the GET is closed and ``Paused`` is raised
    (the caller commits the writer, which confirms every byte written).
    """
    boundaries = Boundaries(state, writer)
    hashing: asyncio.Future[Snapshots] | None = None
    written = 0
    chunks = aiter(stream)
    try:
        async for chunk in chunks:
            hashing = asyncio.ensure_future(hash_after(hashing, state.digests, chunk))
            boundaries.add(written, hashing)
            await writer.write(chunk)
            written += len(chunk)
            await boundaries.settle(keep_one=True)
            progress.bytes_moved(plan, len(chunk))
            if out_of_time is not None and out_of_time():
                await boundaries.settle(keep_one=False)
                raise Paused(state.digests.size)
        await boundaries.settle(keep_one=False)
    except BaseException:
        if hashing is not None:  # let the hash chain settle; keep confirmed, hashed boundaries
            await asyncio.gather(hashing, return_exceptions=True)
        boundaries.settle_done()
        raise
    finally:
        # Ends the GET's read-ahead and closes its body now: left to the garbage
        # collector, a generator caught in a reference cycle cannot run its cleanup
        # and the response's socket leaks.
        close = getattr(chunks, "aclose", None)
        if close is not None:
            with contextlib.suppress(Exception):
                await close()


async def _send(source: Source, dest: Destination, plan: FilePlan, tmp: str, offset: int,
                state: ResumeState, options: CopyOptions, progress: ProgressSubscriber) -> None:
    if offset and offset >= plan.size:  # every byte is there already: nothing to stream
        state.expected = state.expected or {k: v for k, v in (
            ("md5", plan.source_md5), ("sha256", plan.source_sha256)) if v}
        _check_source(plan, state.expected, state.digests, plan.size)
        state.sent = True
        return
    # verify_file asks the server for MD5 first: it may hash while the file is written.
    digest: HashName | None = "md5" if options.verify == "auto" and \
        "md5" in dest.capabilities.hashes else None
    writer, stream = await _open_both(source, dest, plan, tmp, offset, digest)
    if options.bucket is not None:
        writer = ThrottledWriter(writer, options.bucket)
    try:
        if offset == 0 and options.transformed:  # S3's checksums describe the plaintext
            state.expected = {}
            state.digests = Digests()
        elif offset == 0:
            state.expected = {k: v for k, v in (("md5", plan.source_md5),
                                                ("sha256", plan.source_sha256)) if v}
            state.expected.update(stream.info.checksums)
            state.digests = Digests(md5=not proves_md5(dest, options.verify, state.expected))
        await _stream(stream, writer, plan, state, progress, options.out_of_time)
        await writer.commit()
    except Paused:
        await writer.commit()  # the confirmed prefix stays for the next invocation
        raise
    except BaseException:
        await writer.abort()
        raise
    try:
        if not options.transformed:
            _check_source(plan, state.expected, state.digests, plan.size)
    except FileFerryError:
        state.reset()
        raise
    state.sent = True


async def _attempt(source: Source, dest: Destination, plan: FilePlan, tmp: str,
                   state: ResumeState, options: CopyOptions,
                   progress: ProgressSubscriber) -> FileResult:
    fresh = not state.started
    offset = await _resume_point(dest, tmp, state, options.resume_existing,
                                 options.transformed)
    if offset > plan.size and not options.transformed:
        state.reset()
        offset = 0
    if offset and (not fresh or options.resume_existing) and not state.sent:
        progress.file_resumed(plan, offset)
    state.started = True
    if not state.sent:
        await _send(source, dest, plan, tmp, offset, state, options, progress)
    try:
        verified_by = await verify_file(dest, tmp, state.digests, options.verify,
                                        state.expected.get("md5"))
    except (VerificationFailed, ChecksumMismatch):
        state.reset()
        raise
    final = await place(dest, tmp, plan.destination, options.on_conflict)
    return FileResult(source=plan.source, destination=final, size=state.digests.size,
                      sha256=state.digests.sha256,
                      md5=state.digests.md5 or state.expected.get("md5"),
                      verified_by=verified_by, status="DELIVERED")


async def copy_file(source: Source, dest: Destination, plan: FilePlan, options: CopyOptions,
                    progress: ProgressSubscriber,
                    state: ResumeState | None = None) -> FileResult:
    """Deliver one object, retrying what can be retried and resuming where it stopped.

    On failure nothing is left under the final name and the temporary file is
    removed (where the server can still be reached). ``state`` continues an
    earlier call's work (digests of a prefix already at the destination); on
    ``Paused`` it holds what this call achieved and the temporary file stays.
    """
    tmp = temp_name(plan.destination, options.tag)
    state = state if state is not None else ResumeState()
    progress.file_started(plan)

    def before_sleep(call: RetryCallState) -> None:
        error = call.outcome.exception() if call.outcome else None
        log.warning("%s: attempt %d failed (%s); retrying", plan.source, call.attempt_number,
                    error)
        progress.file_retrying(plan, call.attempt_number, str(error))

    try:
        async for attempt in options.retry.retrying(before_sleep):
            with attempt:
                result = await _attempt(source, dest, plan, tmp, state, options, progress)
    except Paused:
        raise
    except BaseException:
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.shield(remove_quietly(dest, tmp))
        raise
    progress.file_finished(result)
    return result
