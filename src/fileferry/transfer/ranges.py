"""Large files on destinations that write at offsets: parallel ranges into one temporary file.

Each range is one streamed S3 GET of at least ``transfer.min_range_size``
(many small ranged GETs are slow on S3) written at its offset. SHA-256 cannot
be computed over ranges arriving out of order, so each range's MD5 and
SHA-256 are computed in-stream and the file is proved range by range: by the
server (``dd | md5sum`` per range, then ``sha256sum`` of the whole file, in
one SSH exec) or by reading it back once in order, which also yields the
whole file's digests.
"""

from __future__ import annotations

import asyncio
import logging
import math

from tenacity import RetryCallState

from fileferry.endpoints.base import Destination, Source, Writer
from fileferry.errors import FileFerryError, SourceError, VerificationFailed
from fileferry.models import FilePlan, FileResult, VerifiedBy
from fileferry.transfer.copy import (
    CopyOptions,
    ResumeState,
    _stream,
    place,
    remove_quietly,
    temp_name,
)
from fileferry.transfer.hashing import Digests
from fileferry.transfer.progress import ProgressSubscriber
from fileferry.transfer.throttle import ThrottledWriter

__all__ = ["copy_ranges", "plan_ranges", "uses_ranges"]

log = logging.getLogger(__name__)

Range = tuple[int, int]


def uses_ranges(dest: Destination, plan: FilePlan, threshold: int, min_range: int,
                verify: str) -> bool:
    """Ranges need offset writes, a large file, and a check that yields the SHA-256."""
    return (dest.capabilities.supports_offset_writes and plan.size >= threshold
            and plan.size >= 2 * min_range and verify in ("auto", "readback"))


def plan_ranges(size: int, min_range: int, max_ranges: int) -> list[Range]:
    count = max(1, min(max_ranges, size // min_range))
    step = math.ceil(size / count)
    return [(start, min(start + step, size)) for start in range(0, size, step)]


async def _send_range(source: Source, dest: Destination, plan: FilePlan, tmp: str,
                      rng: Range, state: ResumeState, options: CopyOptions,
                      progress: ProgressSubscriber) -> None:
    """One range, retried and resumed from its last acknowledged chunk."""
    start, end = rng

    async def attempt() -> None:
        if state.started:  # continue after the last acknowledged chunk of this range
            state.resume_from(state.checkpoints[-1].size if state.checkpoints else 0)
        state.started = True
        offset = start + state.digests.size
        if offset >= end:
            return
        writer: Writer = await dest.open_write(tmp, offset, truncate=False)
        if options.bucket is not None:
            writer = ThrottledWriter(writer, options.bucket)
        try:
            stream = await source.open_range(plan.bucket, plan.key, offset, end)
            # Checkpoints only where the server confirmed every byte before them.
            await _stream(stream, writer, plan, state, progress)
            await writer.commit()
        except BaseException:
            await writer.abort()
            raise
        if state.digests.size != end - start:
            state.reset()
            raise SourceError(f"{plan.source}: range {start}-{end} gave {state.digests.size} "
                              "bytes")

    def before_sleep(call: RetryCallState) -> None:
        error = call.outcome.exception() if call.outcome else None
        progress.file_retrying(plan, call.attempt_number, f"range {start}-{end}: {error}")

    async for retry in options.retry.retrying(before_sleep):
        with retry:
            await attempt()


async def _verify_ranges(dest: Destination, tmp: str, ranges: list[Range],
                         parts: list[Digests]) -> tuple[VerifiedBy, str, str | None]:
    """Prove every range; return (method, whole sha256, whole md5 if known)."""
    if dest.capabilities.range_hashes:
        try:
            md5s, sha256 = await dest.digest_ranges(tmp, ranges)
        except FileFerryError as exc:
            log.warning("range digests failed (%s); reading the file back instead", exc)
        else:
            bad = [f"{s}-{e}" for (s, e), got, part in zip(ranges, md5s, parts, strict=True)
                   if got != part.md5]
            if bad:
                raise VerificationFailed(f"{tmp}: ranges {', '.join(bad)} differ on the server")
            return "server-md5", sha256, None
    whole = Digests()
    part, index = Digests(), 0
    async for chunk in dest.open_read(tmp):
        await whole.update_async(chunk)
        while chunk:
            take = ranges[index][1] - ranges[index][0] - part.size if index < len(ranges) else 0
            if take <= 0:
                raise VerificationFailed(f"{tmp} is longer than the object")
            part.update(chunk[:take])
            chunk = chunk[take:]
            if part.size == ranges[index][1] - ranges[index][0]:
                if part.md5 != parts[index].md5:
                    raise VerificationFailed(f"{tmp}: range {ranges[index]} differs on read-back")
                part, index = Digests(), index + 1
    if index != len(ranges):
        raise VerificationFailed(f"{tmp} is shorter than the object ({whole.size} bytes)")
    return "readback-sha256", whole.sha256, whole.md5


async def copy_ranges(source: Source, dest: Destination, plan: FilePlan, options: CopyOptions,
                      progress: ProgressSubscriber, ranges: list[Range]) -> FileResult:
    """Deliver a large object as parallel ranges; nothing under the final name on failure."""
    tmp = temp_name(plan.destination, options.tag)
    states = [ResumeState() for _ in ranges]
    progress.file_started(plan)
    try:
        writer = await dest.open_write(tmp)  # create it once; ranges then write in place
        await writer.commit()
        await asyncio.gather(*(_send_range(source, dest, plan, tmp, rng, state, options,
                                           progress) for rng, state in zip(ranges, states,
                                                                           strict=True)))
        verified_by, sha256, md5 = await _verify_ranges(dest, tmp, ranges,
                                                        [s.digests for s in states])
        if plan.source_sha256 and plan.source_sha256 != sha256:
            raise VerificationFailed(f"{plan.source}: SHA-256 {sha256} differs from S3's "
                                     f"{plan.source_sha256}")
        final = await place(dest, tmp, plan.destination, options.on_conflict)
    except BaseException:
        await asyncio.shield(remove_quietly(dest, tmp))
        raise
    result = FileResult(source=plan.source, destination=final, size=plan.size, sha256=sha256,
                        md5=md5, verified_by=verified_by, status="DELIVERED")
    progress.file_finished(result)
    return result
