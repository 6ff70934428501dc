"""Run transfers: submit, record and run later, resume, continue, and their history.

A transfer is an execution of the workflow (``workflow/transfer.asl.json``)
on the embedded runner, recorded in the state store; with ``workflow.engine:
stepfunctions`` the same calls hand it to AWS (``fileferry.aws.stepfunctions``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from fileferry.config import Settings
from fileferry.errors import FileFerryError, UsageError
from fileferry.identity.principal import Principal, local_principal
from fileferry.integrations.outbox import drain, flush
from fileferry.models import TransferResult
from fileferry.services._common import close_deps, deliverers, execution_id_for, make_deps
from fileferry.services.views import transfer_result
from fileferry.store import Store, open_store
from fileferry.transfer.engine import TransferRequest
from fileferry.transfer.progress import ProgressSubscriber
from fileferry.transfer.retry import Sleep
from fileferry.workflow.asl import ExecutionResult
from fileferry.workflow.models import ExecutionInput, Tickets
from fileferry.workflow.runner import run_execution
from fileferry.workflow.steps.deps import Deps
from fileferry.workflow.steps.finish import remove_leftovers
from fileferry.workflow.steps.validate import ensure_transfer

__all__ = ["check_destination", "check_request", "check_sources", "continue_transfer",
           "history", "record_transfer", "resume_transfers", "run_recorded",
           "submit_transfer"]

# How often (seconds) a running transfer reads its cancel flag from the store.
CANCEL_POLL = 1.0


async def _watch_cancel(store: Store, transfer_id: str, cancel: asyncio.Event) -> None:
    while not cancel.is_set():
        await asyncio.sleep(CANCEL_POLL)
        record = await store.get_transfer(transfer_id)
        if record is not None and record.options.get("cancel_requested"):
            cancel.set()


async def _flush(deps: Deps, transfer_id: str) -> None:
    """Give queued ticket work up to ``servicenow.flush_timeout`` to reach ServiceNow."""
    snow = deps.settings.servicenow
    if snow is not None:
        await flush(deliverers(deps), deps.store, transfer_id, snow.flush_timeout)


async def _run(deps: Deps, transfer_id: str, payload: dict[str, Any],
               resume: bool, park: bool = False) -> TransferResult:
    cancel = asyncio.Event()
    watcher = asyncio.create_task(_watch_cancel(deps.store, transfer_id, cancel))
    try:
        execution = await run_execution(deps, execution_id_for(transfer_id), payload,
                                        resume=resume, cancel=cancel, park=park)
    finally:
        watcher.cancel()
    if execution.status == "PARKED":  # waiting for approval: a cancel is carried out now
        record = await deps.store.get_transfer(transfer_id)
        if record is not None and record.options.get("cancel_requested"):
            execution = ExecutionResult("ABORTED", None, None, None)
    if execution.status == "ABORTED":
        await _after_cancel(deps, transfer_id)
    await _flush(deps, transfer_id)
    return await transfer_result(deps.store, transfer_id, execution)


async def _after_cancel(deps: Deps, transfer_id: str) -> None:
    """What HandleError does for a failure: temporary files, tickets, notice, session."""
    record = await deps.store.get_transfer(transfer_id)
    if record is None:
        return
    for entry in await deps.store.audit(transfer_id):  # log out first
        if entry.event == "session_opened":
            await deps.sessions.close(transfer_id, str(entry.detail.get("session_id")))
    name = record.destination.partition(":")[0]
    await remove_leftovers(deps, transfer_id, name)
    tickets = Tickets.model_validate(record.tickets) if record.tickets else None
    await deps.ticketing.update(transfer_id, tickets, "CANCELLED", {"by": "request"})
    await deps.notifier.notify(transfer_id, record.requester, "CANCELLED",
                               f"{transfer_id} was cancelled")
    await deps.store.update_transfer(transfer_id, status="CANCELLED")


def _default_principal(settings: Settings, requester: str) -> Principal:
    if settings.sso is None:
        return local_principal(requester)
    return Principal(user=requester, source="sso")


async def submit_transfer(settings: Settings, request: TransferRequest,
                          subscribers: Sequence[ProgressSubscriber] = (),
                          sleep: Sleep | None = None, source: Any = None, *,
                          principal: Principal | None = None,
                          wait_for_approval: bool = True,
                          options: dict[str, Any] | None = None) -> TransferResult:
    """Record a transfer and run its workflow to the end.

    ``principal`` is who asks (verified by the caller: a token, or the OS user);
    without it the request's requester is used, with the OS user's groups when
    there is no ``sso:`` and with no groups when there is. When the policy asks
    for approval, the call waits for the decision, or with ``wait_for_approval``
    False returns ``PENDING_APPROVAL`` at once (``continue_transfer`` goes on).
    ``options`` travel with the execution (e.g. the route a batch belongs to).
    """
    who = principal or _default_principal(settings, request.requester)
    if settings.workflow.engine == "stepfunctions":  # an execution on AWS; see aws/
        from fileferry.aws.stepfunctions import submit_on_aws

        request = dataclasses.replace(request, requester=who.user)
        return await submit_on_aws(settings, request, sleep, groups=sorted(who.groups),
                                   options=options)
    store = open_store(settings.store.url)
    deps = make_deps(settings, store, subscribers, sleep, source)
    try:
        payload = ExecutionInput(transfer_id=request.transfer_id, requester=who.user,
                                 groups=sorted(who.groups), sources=list(request.sources),
                                 destination=request.destination, options=options or {})
        await ensure_transfer(payload, deps, execution_id_for(request.transfer_id))
        return await _run(deps, request.transfer_id, payload.model_dump(), resume=False,
                          park=not wait_for_approval)
    finally:
        await close_deps(deps)
        await store.close()


async def resume_transfers(settings: Settings, transfer_id: str | None = None,
                           subscribers: Sequence[ProgressSubscriber] = (),
                           sleep: Sleep | None = None,
                           clock: Callable[[], float] = time.time) -> list[TransferResult]:
    """Continue unfinished executions (one, or all) from their last checkpoint.

    With ``workflow.engine: stepfunctions`` AWS keeps and runs the executions (the
    store's unfinished ones are theirs): only queued ticket work is delivered here.
    """
    aws = settings.workflow.engine == "stepfunctions"
    if aws and transfer_id:
        raise UsageError(f"{transfer_id} runs on Step Functions, which keeps its state; "
                         "redrive a failed execution with `aws stepfunctions "
                         "redrive-execution` instead")
    store = open_store(settings.store.url)
    deps = make_deps(settings, store, subscribers, sleep, clock=clock)
    try:
        ids = [transfer_id] if transfer_id else [] if aws else [
            e.removeprefix("exec-") for e in await store.unfinished_executions()]
        pending_ids = await store.transfers_with_pending_work()
        results = []
        for tid in ids:
            record = await store.get_transfer(tid)
            if record is None:
                raise FileFerryError(f"no transfer {tid} in {settings.store.url}")
            payload = ExecutionInput(transfer_id=tid, requester=record.requester,
                                     groups=list(record.options.get("groups") or []),
                                     sources=record.sources, destination=record.destination,
                                     options=record.options)
            # a resume never blocks on a pending approval: it stays PENDING_APPROVAL
            results.append(await _run(deps, tid, payload.model_dump(), resume=True, park=True))
        await drain(deliverers(deps), store)
        if transfer_id is None:  # finished transfers whose tickets were owed
            done = {r.transfer_id for r in results}
            results += [await transfer_result(store, tid) for tid in pending_ids
                        if tid not in done]
        return results
    finally:
        await close_deps(deps)
        await store.close()


async def continue_transfer(settings: Settings, transfer_id: str, *,
                            sleep: Sleep | None = None,
                            clock: Callable[[], float] = time.time) -> TransferResult | None:
    """Carry a decided transfer on here, unless a live process already waits for it
    (then None: that process goes on by itself)."""
    store = open_store(settings.store.url)
    try:
        if await store.lease_owner(execution_id_for(transfer_id), time.time()) is not None:
            return None
    finally:
        await store.close()
    results = await resume_transfers(settings, transfer_id, sleep=sleep, clock=clock)
    return results[0] if results else None


async def history(settings: Settings, transfer_id: str) -> list[dict[str, Any]]:
    if settings.workflow.engine == "stepfunctions":
        from fileferry.aws.stepfunctions import history_on_aws

        return await history_on_aws(settings, transfer_id)
    store = open_store(settings.store.url)
    try:
        return await store.history(execution_id_for(transfer_id))
    finally:
        await store.close()


# --- for the API (and the CLI's list/status): record now, run later


def check_sources(sources: Sequence[str]) -> None:
    """Refuse (UsageError) an empty list or a source that is not ``s3://bucket/...``."""
    from fileferry.endpoints.s3 import parse_s3_uri

    if not sources:
        raise UsageError("give at least one source, e.g. s3://bucket/key")
    for source in sources:
        parse_s3_uri(source)


def check_destination(settings: Settings, destination: str) -> None:
    """Refuse a destination that is not ``NAME:PATH``, not configured, or whose PATH
    leaves the root (checked here when the root is absolute or PATH relative; a ``~``
    root is known only once connected, where the workflow checks it)."""
    from fileferry.paths import split_destination, target_dir
    from fileferry.transfer.engine import destination_settings

    name, path = split_destination(destination)
    root = destination_settings(settings, name).parsed.path
    if root.startswith("/") or not path.startswith("/"):
        target_dir(root if root.startswith("/") else "/" + root, path, name)


def check_request(settings: Settings, request: TransferRequest) -> None:
    """Refuse, without any I/O, what is wrong in the request itself."""
    check_sources(request.sources)
    check_destination(settings, request.destination)


async def record_transfer(settings: Settings, request: TransferRequest,
                          options: dict[str, Any] | None = None, *,
                          groups: Iterable[str] = ()) -> None:
    """Check the request and record the transfer (PENDING) without running it;
    ``run_recorded`` runs it (``groups``, the requester's, go to the policy check).
    Recording the same id again changes nothing."""
    check_request(settings, request)
    store = open_store(settings.store.url)
    deps = make_deps(settings, store)
    try:
        payload = ExecutionInput(transfer_id=request.transfer_id, requester=request.requester,
                                 groups=sorted(groups), sources=list(request.sources),
                                 destination=request.destination, options=options or {})
        await ensure_transfer(payload, deps, execution_id_for(request.transfer_id))
    finally:
        await close_deps(deps)
        await store.close()


async def run_recorded(settings: Settings, transfer_id: str,
                       subscribers: Sequence[ProgressSubscriber] = ()) -> TransferResult:
    """Run a recorded transfer's workflow, from its checkpoint if it has one. One whose
    cancel was asked for before it started ends CANCELLED without running."""
    if settings.workflow.engine == "stepfunctions":
        from fileferry.aws.stepfunctions import run_recorded_on_aws

        return await run_recorded_on_aws(settings, transfer_id)
    store = open_store(settings.store.url)
    try:
        record = await store.get_transfer(transfer_id)
        if record is not None and record.status == "PENDING" \
                and record.options.get("cancel_requested"):
            await store.update_transfer(transfer_id, status="CANCELLED")
            return await transfer_result(store, transfer_id)
    finally:
        await store.close()
    [result] = await resume_transfers(settings, transfer_id, subscribers)
    return result
