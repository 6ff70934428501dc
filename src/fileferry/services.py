"""Service functions shared by the CLI (and later the API and the agent).

A transfer is an execution of the workflow (``workflow/transfer.asl.json``)
on the embedded runner, recorded in the state store.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from fileferry.config import Settings
from fileferry.errors import FileFerryError, RefusedError, all_error_classes
from fileferry.integrations.notify import WebhookNotifier
from fileferry.integrations.outbox import Deliverer, OutboxTicketing, drain, flush, lane
from fileferry.models import FileResult, TransferResult
from fileferry.store import Store, open_store
from fileferry.transfer.engine import TransferRequest
from fileferry.transfer.progress import ProgressSubscriber
from fileferry.transfer.retry import Sleep
from fileferry.workflow.asl import ExecutionResult
from fileferry.workflow.models import ExecutionInput, Tickets
from fileferry.workflow.ports import (
    ConfigSecrets,
    LocalNotifier,
    LocalSessions,
    LocalTicketing,
    Notifier,
    Ticketing,
)
from fileferry.workflow.runner import run_execution
from fileferry.workflow.steps.deps import Deps
from fileferry.workflow.steps.finish import remove_leftovers
from fileferry.workflow.steps.validate import ensure_transfer

__all__ = ["deliver_pending", "history", "make_deps", "request_cancel", "resume_transfers",
           "submit_transfer", "transfer_result"]

_REFUSALS = {cls.__name__ for cls in all_error_classes() if issubclass(cls, RefusedError)}
CANCEL_POLL = 1.0


def make_deps(settings: Settings, store: Store,
              subscribers: Sequence[ProgressSubscriber] = (), sleep: Sleep | None = None,
              source: Any = None) -> Deps:
    """The local ports; later issues swap in ServiceNow, Teams/Slack, SSO, Secrets Manager."""
    notifier: Notifier = (WebhookNotifier(store, settings.notifications)
                          if settings.notifications.channels else LocalNotifier(store))
    ticketing: Ticketing = LocalTicketing(store)
    if settings.servicenow is not None:
        from fileferry.integrations.servicenow import ServiceNowTicketing

        ticketing = OutboxTicketing(ServiceNowTicketing(store, settings.servicenow), store)
    return Deps(settings=settings, store=store, ticketing=ticketing,
                notifier=notifier, sessions=LocalSessions(store),
                secrets=ConfigSecrets(settings), sleep=sleep, subscribers=list(subscribers),
                source=source)


def execution_id_for(transfer_id: str) -> str:
    return f"exec-{transfer_id}"


async def transfer_result(store: Store, transfer_id: str,
                          execution: ExecutionResult | None = None) -> TransferResult:
    """The CLI's and the API's view of a transfer, from the store."""
    record = await store.get_transfer(transfer_id)
    files = await store.get_files(transfer_id)
    pending = any(e.state == "pending" and lane(e) == "tickets"
                  for e in await store.work(transfer_id))
    failed = execution is not None and execution.status != "SUCCEEDED"
    results = [FileResult(source=f.source, destination=f.destination, size=f.size,
                          sha256=f.sha256, md5=f.md5, verified_by=f.verified_by,
                          status=f.status if f.status in ("DELIVERED", "FAILED")
                          else ("CANCELLED" if failed else "PLANNED"),
                          error=f.error) for f in files]
    if execution is None or execution.status == "SUCCEEDED":
        status = "SUCCEEDED" if execution else (record.status if record else "FAILED")
        return TransferResult(transfer_id=transfer_id, status=status,
                              execution_id=record.execution_id if record else None,
                              files=results, tickets=(record.tickets or None) if record else None,
                              tickets_pending=pending)
    error = {"type": execution.error or "States.Runtime", "message": execution.cause or ""}
    moved = any(f.status in ("DELIVERED", "FAILED") or f.bytes_confirmed for f in files)
    if execution.status == "ABORTED":
        status = "CANCELLED"
        error = {"type": "Cancelled", "message": "the transfer was cancelled"}
    elif error["type"] in _REFUSALS and not moved:
        status, results = "REFUSED", []
    else:
        status = "FAILED"
    return TransferResult(transfer_id=transfer_id, status=status,
                          execution_id=record.execution_id if record else None,
                          files=results, error=error,
                          tickets=(record.tickets or None) if record else None,
                          tickets_pending=pending)


async def _close(deps: Deps) -> None:
    """Integration clients that hold connections (ServiceNow) are closed with the store."""
    closer = getattr(deps.ticketing, "close", None)
    if closer is not None:
        await closer()


async def _watch_cancel(store: Store, transfer_id: str, cancel: asyncio.Event) -> None:
    while not cancel.is_set():
        await asyncio.sleep(CANCEL_POLL)
        record = await store.get_transfer(transfer_id)
        if record is not None and record.options.get("cancel_requested"):
            cancel.set()


def _deliverers(deps: Deps) -> dict[str, Deliverer]:
    """Which port does each kind of queued work (``op``) in the outbox."""
    out: dict[str, Deliverer] = {}
    if isinstance(deps.ticketing, OutboxTicketing):
        out["create"] = out["update"] = deps.ticketing
    if isinstance(deps.notifier, WebhookNotifier):
        out["notify"] = deps.notifier
    return out


async def _flush(deps: Deps, transfer_id: str) -> None:
    """Give queued ticket work up to ``servicenow.flush_timeout`` to reach ServiceNow."""
    snow = deps.settings.servicenow
    if snow is not None:
        await flush(_deliverers(deps), deps.store, transfer_id, snow.flush_timeout)


async def _run(deps: Deps, transfer_id: str, payload: dict[str, Any],
               resume: bool) -> TransferResult:
    cancel = asyncio.Event()
    watcher = asyncio.create_task(_watch_cancel(deps.store, transfer_id, cancel))
    try:
        execution = await run_execution(deps, execution_id_for(transfer_id), payload,
                                        resume=resume, cancel=cancel)
    finally:
        watcher.cancel()
    if execution.status == "ABORTED":
        await _after_cancel(deps, transfer_id)
    await _flush(deps, transfer_id)
    return await transfer_result(deps.store, transfer_id, execution)


async def _after_cancel(deps: Deps, transfer_id: str) -> None:
    """What HandleError does for a failure: temporary files, tickets, notice, session."""
    record = await deps.store.get_transfer(transfer_id)
    if record is None:
        return
    name = record.destination.partition(":")[0]
    await remove_leftovers(deps, transfer_id, name)
    tickets = Tickets.model_validate(record.tickets) if record.tickets else None
    await deps.ticketing.update(transfer_id, tickets, "CANCELLED", {"by": "request"})
    await deps.notifier.notify(transfer_id, record.requester, "CANCELLED",
                               f"{transfer_id} was cancelled")
    audit = await deps.store.audit(transfer_id)
    for entry in audit:
        if entry.event == "session_opened":
            await deps.sessions.close(transfer_id, str(entry.detail.get("session_id")))
    await deps.store.update_transfer(transfer_id, status="CANCELLED")


async def submit_transfer(settings: Settings, request: TransferRequest,
                          subscribers: Sequence[ProgressSubscriber] = (),
                          sleep: Sleep | None = None, source: Any = None,
                          options: dict[str, Any] | None = None) -> TransferResult:
    """Record a transfer and run its workflow to the end (``options``: e.g. the route)."""
    store = open_store(settings.store.url)
    deps = make_deps(settings, store, subscribers, sleep, source)
    try:
        payload = ExecutionInput(transfer_id=request.transfer_id, requester=request.requester,
                                 sources=list(request.sources),
                                 destination=request.destination, options=options or {})
        await ensure_transfer(payload, deps, execution_id_for(request.transfer_id))
        return await _run(deps, request.transfer_id, payload.model_dump(), resume=False)
    finally:
        await _close(deps)
        await store.close()


async def resume_transfers(settings: Settings, transfer_id: str | None = None,
                           subscribers: Sequence[ProgressSubscriber] = (),
                           sleep: Sleep | None = None) -> list[TransferResult]:
    """Continue unfinished executions (one, or all) from their last checkpoint."""
    store = open_store(settings.store.url)
    deps = make_deps(settings, store, subscribers, sleep)
    try:
        ids = [transfer_id] if transfer_id else [
            e.removeprefix("exec-") for e in await store.unfinished_executions()]
        pending_ids = await store.transfers_with_pending_work()
        results = []
        for tid in ids:
            record = await store.get_transfer(tid)
            if record is None:
                raise FileFerryError(f"no transfer {tid} in {settings.store.url}")
            payload = ExecutionInput(transfer_id=tid, requester=record.requester,
                                     sources=record.sources, destination=record.destination,
                                     options=record.options)
            results.append(await _run(deps, tid, payload.model_dump(), resume=True))
        await drain(_deliverers(deps), store)
        if transfer_id is None:  # finished transfers whose tickets were owed
            done = {r.transfer_id for r in results}
            results += [await transfer_result(store, tid) for tid in pending_ids
                        if tid not in done]
        return results
    finally:
        await _close(deps)
        await store.close()


async def deliver_pending(settings: Settings) -> int:
    """Deliver ticket and notification work queued during an outage; returns how much
    is still pending (0 when everything was delivered or was refused for good)."""
    store = open_store(settings.store.url)
    deps = make_deps(settings, store)
    try:
        return (await drain(_deliverers(deps), store)).pending
    finally:
        await _close(deps)
        await store.close()


async def history(settings: Settings, transfer_id: str) -> list[dict[str, Any]]:
    store = open_store(settings.store.url)
    try:
        return await store.history(execution_id_for(transfer_id))
    finally:
        await store.close()


async def request_cancel(settings: Settings, transfer_id: str) -> bool:
    """Ask the process running the transfer to stop it (it polls the store)."""
    store = open_store(settings.store.url)
    try:
        record = await store.get_transfer(transfer_id)
        if record is None or record.status in ("SUCCEEDED", "FAILED", "CANCELLED", "REFUSED"):
            return False
        await store.update_transfer(transfer_id,
                                    options={**record.options, "cancel_requested": True})
        return True
    finally:
        await store.close()
