"""ValidateInput: check the request, resolve the objects, plan the tasks, refuse early.

``CheckFileSize`` gives the seed's thresholds their meaning: files below
``small_file_threshold`` are batched into one task (per-file overhead matters
on Lambda), files up to ``large_file_threshold`` get a task each, and larger
ones become a ``chunked`` task.
"""

from __future__ import annotations

import time
from typing import Literal

from fileferry.automation.batch import batch_names
from fileferry.config import TransferSettings
from fileferry.errors import SourceNotFound, UsageError
from fileferry.models import FilePlan
from fileferry.paths import split_destination
from fileferry.store.models import FileRecord, TransferRecord
from fileferry.transfer.engine import (
    TransferRequest,
    build_plan,
    destination_settings,
    refuse_existing,
)
from fileferry.workflow.models import ExecutionInput, Plan, TaskRef
from fileferry.workflow.steps.access import authorised_destination
from fileferry.workflow.steps.authorize import enforce_policy
from fileferry.workflow.steps.deps import Deps

__all__ = ["BATCH_FILES", "plan_tasks", "validate_input"]

BATCH_FILES = 50


def plan_tasks(plans: list[FilePlan], transfer: TransferSettings) -> list[list[FilePlan]]:
    """Group files into tasks: batches of small files, single files, single large files."""
    tasks: list[list[FilePlan]] = []
    batch: list[FilePlan] = []
    batch_bytes = 0
    for plan in plans:
        if plan.size >= transfer.small_file_threshold:
            tasks.append([plan])
            continue
        if batch and (len(batch) >= BATCH_FILES
                      or batch_bytes + plan.size > transfer.small_file_threshold):
            tasks.append(batch)
            batch, batch_bytes = [], 0
        batch.append(plan)
        batch_bytes += plan.size
    if batch:
        tasks.append(batch)
    return tasks


def _kind(files: list[FilePlan],
          transfer: TransferSettings) -> Literal["batch", "file", "chunked"]:
    if len(files) == 1 and files[0].size >= transfer.large_file_threshold:
        return "chunked"
    return "file" if len(files) == 1 and files[0].size >= transfer.small_file_threshold \
        else "batch"


async def validate_input(inp: ExecutionInput, deps: Deps) -> Plan:
    if not inp.sources:
        raise UsageError("give at least one source, e.g. s3://bucket/key")
    name, _ = split_destination(inp.destination)
    await enforce_policy(inp, deps, name)  # before anything is read
    dsettings = destination_settings(deps.settings, name)
    transfer = deps.settings.transfer
    request = TransferRequest(sources=inp.sources, destination=inp.destination,
                              requester=inp.requester, transfer_id=inp.transfer_id,
                              names=await batch_names(deps.store, inp.transfer_id, inp.options))
    async with authorised_destination(deps, inp.transfer_id, name, purpose="validate",
                                      requester=inp.requester) as (_, dest):
        plans = await build_plan(deps.s3(), dest, name, request)
        if dsettings.on_conflict == "fail":
            await refuse_existing(dest, plans, name)
        root = dest.root
    if request.names is not None and not plans:
        raise SourceNotFound(f"none of the {len(request.names)} object(s) selected for "
                             f"route {inp.options.get('route')} exist any more")
    decision = await enforce_policy(inp, deps, name, plans)  # objects and size, before sending
    groups = plan_tasks(plans, transfer)
    now = deps.clock()
    await deps.store.update_transfer(inp.transfer_id, status="RUNNING",
                                     bytes_total=sum(p.size for p in plans),
                                     files_total=len(plans), updated_at=now)
    for index, files in enumerate(groups):
        await deps.store.record_once("task", f"{inp.transfer_id}/{index}",
                                     {"files": [f.model_dump() for f in files]})
    known = {f.source for f in await deps.store.get_files(inp.transfer_id)}
    await deps.store.upsert_files(inp.transfer_id, [
        FileRecord(source=f.source, destination=f.destination, size=f.size)
        for f in plans if f.source not in known])
    tasks = [TaskRef(kind=_kind(files, transfer), index=i, files=len(files),
                     bytes=sum(f.size for f in files)) for i, files in enumerate(groups)]
    approval = decision.approval
    return Plan(destination_name=name, root=root, tasks=tasks,
                max_parallel=transfer.max_parallel_threads,
                bytes_total=sum(t.bytes for t in tasks), files_total=len(plans),
                policy=decision.label, approval_group=approval.group if approval else None,
                approval_timeout=approval.timeout if approval else None)


async def ensure_transfer(inp: ExecutionInput, deps: Deps, execution_id: str) -> None:
    """The transfer's record exists before the workflow starts (idempotent)."""
    now = time.time()
    await deps.store.create_transfer(TransferRecord(
        transfer_id=inp.transfer_id, execution_id=execution_id, requester=inp.requester,
        sources=inp.sources, destination=inp.destination,
        options={**inp.options, "groups": sorted(inp.groups)},
        status="PENDING", created_at=now, updated_at=now, bytes_total=0, bytes_done=0,
        files_total=0, files_done=0, tickets={}, error=None))
