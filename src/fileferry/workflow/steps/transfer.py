"""TransferToFTP and ChunkedTransfer: move one task's files, each proved before its rename.

Idempotent: a file the store already records as delivered is skipped; a
temporary file left by a crashed attempt is adopted (its bytes are read back
to rebuild the digests) and only the rest is sent.
"""

from __future__ import annotations

import asyncio

from fileferry.automation.encryption import transfer_source
from fileferry.config import DestinationSettings
from fileferry.endpoints.base import Destination, Source
from fileferry.errors import FileFerryError, TransferFailed
from fileferry.models import FilePlan, FileResult
from fileferry.store.progress import StoreProgress
from fileferry.transfer.copy import CopyOptions, copy_file
from fileferry.transfer.engine import bucket_for, destination_settings, make_parents
from fileferry.transfer.progress import Broadcast, ProgressSubscriber
from fileferry.transfer.ranges import copy_ranges, plan_ranges, uses_ranges
from fileferry.transfer.retry import RetryPolicy
from fileferry.workflow.models import TaskResult, TransferTaskIn
from fileferry.workflow.steps.access import authorised_destination
from fileferry.workflow.steps.deps import Deps

__all__ = ["copy_options", "failed", "task_files", "transfer_task"]


async def task_files(deps: Deps, transfer_id: str, index: int) -> list[FilePlan]:
    _, stored = await deps.store.record_once("task", f"{transfer_id}/{index}", {"files": []})
    return [FilePlan.model_validate(f) for f in stored["files"]]


def copy_options(inp: TransferTaskIn, deps: Deps,
                 dsettings: DestinationSettings) -> CopyOptions:
    """How a workflow task copies: resumes what an earlier attempt left, tagged by transfer."""
    return CopyOptions(verify=dsettings.verify, on_conflict=dsettings.on_conflict,
                       tag=inp.transfer_id[-8:],
                       retry=RetryPolicy.for_destination(dsettings, deps.sleep),
                       resume_existing=True, bucket=bucket_for(inp.destination, dsettings))


def failed(progress: ProgressSubscriber, plan: FilePlan, exc: Exception) -> FileFerryError:
    """Record a file's failure; anything unexpected becomes ``TransferFailed``."""
    err = exc if isinstance(exc, FileFerryError) else TransferFailed(
        f"{plan.source}: unexpected error {exc!r}")
    progress.file_finished(FileResult(source=plan.source, destination=plan.destination,
                                      size=plan.size, status="FAILED", error=err.to_dict()))
    return err


async def _one(source: Source, dest: Destination, plan: FilePlan, options: CopyOptions,
               deps: Deps, progress: Broadcast, chunked: bool) -> FileResult:
    transfer = deps.settings.transfer
    if chunked and not options.transformed and uses_ranges(
            dest, plan, transfer.large_file_threshold, transfer.min_range_size, options.verify):
        ranges = plan_ranges(plan.size, transfer.min_range_size, transfer.max_ranges)
        return await copy_ranges(source, dest, plan, options, progress, ranges)
    return await copy_file(source, dest, plan, options, progress)


async def transfer_task(inp: TransferTaskIn, deps: Deps) -> TaskResult:
    tid = inp.transfer_id
    files = await task_files(deps, tid, inp.task.index)
    done = {f.source for f in await deps.store.get_files(tid) if f.status == "DELIVERED"}
    todo = [f for f in files if f.source not in done]
    dsettings = destination_settings(deps.settings, inp.destination)  # no credentials here
    options = copy_options(inp, deps, dsettings)
    store_progress = StoreProgress(deps.store, tid)
    progress = Broadcast([store_progress, *deps.subscribers])
    gate = asyncio.Semaphore(deps.settings.transfer.max_parallel_threads)
    errors: list[FileFerryError] = []

    async def run(plan: FilePlan) -> None:
        async with gate:
            if errors:
                return
            try:  # StoreProgress records the outcome (file_finished)
                await _one(source, dest, plan, options, deps, progress,
                           inp.task.kind == "chunked")
            except Exception as exc:
                errors.append(failed(progress, plan, exc))
                return

    try:
        async with transfer_source(deps, tid, inp.destination) as (source, transformed), \
                authorised_destination(deps, tid, inp.destination, purpose="transfer",
                                       session_id=inp.session_id) as (_, dest):
            options.transformed = transformed
            await make_parents(dest, todo)
            await asyncio.gather(*(run(p) for p in todo))
    finally:
        await store_progress.close()
    if errors:
        raise errors[0]
    return TaskResult(index=inp.task.index, files=len(files), bytes=sum(f.size for f in files))
