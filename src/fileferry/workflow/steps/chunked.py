"""ChunkedTransfer: one large file, continued across invocations when time is boxed.

Locally ``deps.out_of_time`` is None: the step is ``transfer_task`` (parallel
ranges on SFTP, one resumable stream on FTP) and returns ``done: true`` at
once, so the ASL's loop never turns. On Lambda the handler sets a budget (the
remaining time minus a margin): the file streams in one sequence of chunks,
and when the budget runs out at a chunk boundary the bytes so far are
committed under the temporary name and the step returns ``done: false`` with a
``ChunkCheckpoint``. The state machine's Choice sends it back here; the next
invocation re-hashes the confirmed prefix from S3 (hash state cannot be
carried, S3 reads in-region are fast and free) and continues at that offset:
SFTP writes at the offset, FTP sends ``REST`` + ``STOR``. A file is never sent
from zero again because of the time limit, only when the destination lost the
prefix or the S3 object changed in between.
"""

from __future__ import annotations

import logging

from fileferry.endpoints.base import Source
from fileferry.errors import SourceError
from fileferry.models import FilePlan
from fileferry.store.progress import StoreProgress
from fileferry.transfer.copy import Paused, ResumeState, copy_file
from fileferry.transfer.engine import destination_settings, make_parents
from fileferry.transfer.hashing import digest_stream
from fileferry.transfer.progress import Broadcast
from fileferry.workflow.models import ChunkCheckpoint, ChunkedTaskIn, ChunkOut
from fileferry.workflow.steps.access import authorised_destination
from fileferry.workflow.steps.deps import Deps
from fileferry.workflow.steps.transfer import copy_options, failed, task_files, transfer_task

__all__ = ["chunked_transfer", "resume_state"]

log = logging.getLogger(__name__)


def _changed(expected: dict[str, str], now: dict[str, str]) -> bool:
    return any(algo in now and now[algo] != value for algo, value in expected.items())


async def resume_state(source: Source, plan: FilePlan,
                       checkpoint: ChunkCheckpoint | None) -> ResumeState:
    """The digests of the checkpoint's confirmed prefix, re-read from S3.

    A fresh state (start from zero) when there is no checkpoint, or when the
    object's size or checksums differ from those seen when the copy began.
    """
    state = ResumeState()
    if checkpoint is None or checkpoint.offset == 0:
        return state
    info = await source.stat(plan.bucket, plan.key)
    if info.size != plan.size or _changed(checkpoint.expected, info.checksums):
        log.warning("%s changed since its transfer began; sending it from the start",
                    plan.source)
        return state
    stream = await source.open_range(plan.bucket, plan.key, 0, checkpoint.offset)
    state.digests = await digest_stream(stream)
    if state.digests.size != checkpoint.offset:
        raise SourceError(f"{plan.source}: S3 returned {state.digests.size} bytes of the "
                          f"first {checkpoint.offset}")
    state.expected = dict(checkpoint.expected)
    state.checkpoint()
    state.started = True  # _resume_point stats the temporary file and continues from here
    return state


async def chunked_transfer(inp: ChunkedTaskIn, deps: Deps) -> ChunkOut:
    """One invocation of the chunk loop; ``done: false`` asks to be invoked again."""
    files = await task_files(deps, inp.transfer_id, inp.task.index)
    if deps.out_of_time is None or len(files) != 1:
        result = await transfer_task(inp, deps)
        return ChunkOut(**result.model_dump())
    plan = files[0]
    out = ChunkOut(index=inp.task.index, files=1, bytes=plan.size)
    delivered = {f.source for f in await deps.store.get_files(inp.transfer_id)
                 if f.status == "DELIVERED"}
    if plan.source in delivered:
        return out
    previous = inp.chunk.checkpoint if inp.chunk is not None else None
    dsettings = destination_settings(deps.settings, inp.destination)  # no credentials here
    options = copy_options(inp, deps, dsettings)
    store_progress = StoreProgress(deps.store, inp.transfer_id)
    progress = Broadcast([store_progress, *deps.subscribers])
    state = ResumeState()
    try:
        async with authorised_destination(deps, inp.transfer_id, inp.destination,
                                          purpose="transfer",
                                          session_id=inp.session_id) as (_, dest):
            if dest.capabilities.supports_resume:
                options.out_of_time = deps.out_of_time
            else:  # pausing would throw the prefix away: stream it in one go
                log.warning("%s cannot resume (no REST); %s is sent in one invocation",
                            inp.destination, plan.source)
            await make_parents(dest, [plan])
            state = await resume_state(deps.s3(), plan, previous)
            await copy_file(deps.s3(), dest, plan, options, progress, state)
    except Paused:
        count = previous.invocations + 1 if previous else 1
        out.done = False
        out.checkpoint = ChunkCheckpoint(offset=state.digests.size, expected=state.expected,
                                         invocations=count)
    except Exception as exc:
        err = failed(progress, plan, exc)
        if err is exc:
            raise
        raise err from exc
    finally:
        await store_progress.close()
    return out
