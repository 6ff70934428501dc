"""Service functions shared by the CLI (and later the API and the agent).

A transfer is an execution of the workflow (``workflow/transfer.asl.json``)
on the embedded runner, recorded in the state store.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from fileferry.config import Settings
from fileferry.errors import FileFerryError, RefusedError, UsageError, all_error_classes
from fileferry.identity.approvals import Decision, decide
from fileferry.identity.principal import Principal, local_principal
from fileferry.identity.secrets import DestinationSecrets
from fileferry.identity.sessions import DEFAULT_TTL, StoreSessions
from fileferry.integrations.notify import WebhookNotifier
from fileferry.integrations.outbox import Deliverer, OutboxTicketing, drain, flush, lane
from fileferry.models import FileResult, TransferResult
from fileferry.store import Store, open_store
from fileferry.store.base import SchemaEntry
from fileferry.transfer.engine import TransferRequest
from fileferry.transfer.progress import ProgressSubscriber
from fileferry.transfer.retry import Sleep
from fileferry.workflow.asl import ExecutionResult
from fileferry.workflow.models import ExecutionInput, Tickets
from fileferry.workflow.ports import (
    LocalNotifier,
    LocalTicketing,
    Notifier,
    Ticketing,
)
from fileferry.workflow.runner import run_execution
from fileferry.workflow.steps.deps import Deps
from fileferry.workflow.steps.finish import remove_leftovers
from fileferry.workflow.steps.validate import ensure_transfer

if TYPE_CHECKING:
    from fileferry.api.schemas import TransferPublic, TransfersPublic
    from fileferry.integrations.outbox import DrainReport

__all__ = ["approve_transfer", "check_destination", "check_request", "check_sources",
           "continue_transfer", "deliver_pending", "drain_outbox", "history",
           "init_state_store", "make_deps", "mark_cancel_requested", "pending_approvals",
           "record_transfer", "reject_transfer", "request_cancel", "resume_transfers",
           "run_recorded", "stop_if_parked", "submit_transfer", "ticket_links",
           "transfer_public", "transfer_result", "transfers_public"]

_REFUSALS = {cls.__name__ for cls in all_error_classes() if issubclass(cls, RefusedError)}
CANCEL_POLL = 1.0


def make_deps(settings: Settings, store: Store,
              subscribers: Sequence[ProgressSubscriber] = (), sleep: Sleep | None = None,
              source: Any = None, clock: Callable[[], float] = time.time) -> Deps:
    """The local ports; later issues swap in ServiceNow, Teams/Slack, SSO, Secrets Manager."""
    notifier: Notifier = (WebhookNotifier(store, settings.notifications)
                          if settings.notifications.channels else LocalNotifier(store))
    ticketing: Ticketing = LocalTicketing(store)
    if settings.servicenow is not None:
        from fileferry.integrations.servicenow import ServiceNowTicketing

        ticketing = OutboxTicketing(ServiceNowTicketing(store, settings.servicenow), store)
    return Deps(settings=settings, store=store, ticketing=ticketing,
                notifier=notifier, sessions=_sessions(settings, store, clock),
                secrets=DestinationSecrets(settings), sleep=sleep, subscribers=list(subscribers),
                source=source, clock=clock)


def _sessions(settings: Settings, store: Store, clock: Callable[[], float]) -> StoreSessions:
    ttl = settings.sso.session_ttl_seconds if settings.sso is not None else DEFAULT_TTL
    return StoreSessions(store, ttl, clock)


def execution_id_for(transfer_id: str) -> str:
    return f"exec-{transfer_id}"


async def transfer_result(store: Store, transfer_id: str,
                          execution: ExecutionResult | None = None) -> TransferResult:
    """The CLI's and the API's view of a transfer, from the store."""
    record = await store.get_transfer(transfer_id)
    files = await store.get_files(transfer_id)
    pending = any(e.state == "pending" and lane(e) == "tickets"
                  for e in await store.work(transfer_id))
    if execution is not None and execution.status == "PARKED":
        return TransferResult(transfer_id=transfer_id, status="PENDING_APPROVAL",
                              execution_id=record.execution_id if record else None, files=[],
                              tickets=(record.tickets or None) if record else None,
                              tickets_pending=pending)
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
        await _close(deps)
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
        await drain(_deliverers(deps), store)
        if transfer_id is None:  # finished transfers whose tickets were owed
            done = {r.transfer_id for r in results}
            results += [await transfer_result(store, tid) for tid in pending_ids
                        if tid not in done]
        return results
    finally:
        await _close(deps)
        await store.close()


async def _decide(settings: Settings, transfer_id: str, principal: Principal,
                  decision: Decision, reason: str | None,
                  clock: Callable[[], float]) -> dict[str, Any]:
    store = open_store(settings.store.url)
    try:
        outcome = await decide(store, transfer_id, principal, decision, reason, clock=clock)
        if settings.workflow.engine == "stepfunctions":  # the execution waits on AWS
            from fileferry.aws.stepfunctions import StepFunctions

            request = await store.recorded("approval_request", transfer_id) or {}
            await StepFunctions(settings.workflow).decide(str(request["callback_id"]), outcome)
        return outcome
    finally:
        await store.close()


async def approve_transfer(settings: Settings, transfer_id: str, principal: Principal,
                           reason: str | None = None, *,
                           clock: Callable[[], float] = time.time) -> dict[str, Any]:
    """``principal`` approves the pending transfer (``identity.approvals.decide``)."""
    return await _decide(settings, transfer_id, principal, "approved", reason, clock)


async def reject_transfer(settings: Settings, transfer_id: str, principal: Principal,
                          reason: str | None = None, *,
                          clock: Callable[[], float] = time.time) -> dict[str, Any]:
    """``principal`` rejects the pending transfer; it ends REFUSED (ApprovalRejected)."""
    return await _decide(settings, transfer_id, principal, "rejected", reason, clock)


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


async def stop_if_parked(settings: Settings, transfer_id: str) -> TransferResult | None:
    """Carry out a requested cancel of a transfer parked for approval (nobody runs it);
    None when it is not parked."""
    store = open_store(settings.store.url)
    try:
        record = await store.get_transfer(transfer_id)
    finally:
        await store.close()
    if record is None or record.status != "PENDING_APPROVAL":
        return None
    return await continue_transfer(settings, transfer_id)


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


async def drain_outbox(deps: Deps) -> DrainReport:
    """``deliver_pending`` over ports already made (``FileFerry-DeliverPending`` on AWS)."""
    return await drain(_deliverers(deps), deps.store)


async def history(settings: Settings, transfer_id: str) -> list[dict[str, Any]]:
    if settings.workflow.engine == "stepfunctions":
        from fileferry.aws.stepfunctions import history_on_aws

        return await history_on_aws(settings, transfer_id)
    store = open_store(settings.store.url)
    try:
        return await store.history(execution_id_for(transfer_id))
    finally:
        await store.close()


async def request_cancel(settings: Settings, transfer_id: str) -> bool:
    """Ask the process running the transfer to stop it (it polls the store); a transfer
    parked for approval is stopped by ``stop_if_parked``."""
    if settings.workflow.engine == "stepfunctions":
        from fileferry.aws.stepfunctions import cancel_on_aws

        return await cancel_on_aws(settings, transfer_id)
    store = open_store(settings.store.url)
    try:
        return await mark_cancel_requested(store, transfer_id)
    finally:
        await store.close()


async def mark_cancel_requested(store: Store, transfer_id: str) -> bool:
    """Set the transfer's ``cancel_requested`` flag, which the process running it polls
    (locally ``_watch_cancel``, on Lambda ``aws.cancel``); False for an unknown or
    already final transfer (nothing to stop)."""
    record = await store.get_transfer(transfer_id)
    if record is None or record.status in ("SUCCEEDED", "FAILED", "CANCELLED", "REFUSED"):
        return False
    await store.update_transfer(transfer_id, options={**record.options, "cancel_requested": True})
    return True


# --- for the API (and the CLI's list/status): record now, run later, read views


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
        await _close(deps)
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


def ticket_links(settings: Settings, tickets: dict[str, str] | None) -> dict[str, str] | None:
    """Links to the tickets in ServiceNow (none while tickets are local ids)."""
    if not tickets or settings.servicenow is None:
        return None
    template = settings.notifications.ticket_link or (
        settings.servicenow.instance_url.rstrip("/")
        + "/nav_to.do?uri=task.do?sysparm_query=number={number}")
    return {kind: template.replace("{number}", number) for kind, number in tickets.items()}


async def transfer_public(settings: Settings, store: Store, transfer_id: str, *,
                          detail: bool = True) -> TransferPublic | None:
    """A transfer as the API and ``fileferry status`` show it; None when unknown.
    Progress is summed from the files (the store keeps it per file); ``detail``
    adds the files and the workflow history."""
    from fileferry.api.schemas import FilePublic, TransferPublic

    record = await store.get_transfer(transfer_id)
    if record is None:
        return None
    files = await store.get_files(transfer_id)
    events = await store.history(record.execution_id) if detail and record.execution_id \
        else None
    # As transfer --json says it: a refusal before anything moved is REFUSED (the
    # workflow records such an end as FAILED, with the refusal as its error).
    moved = any(f.status in ("DELIVERED", "FAILED") or f.bytes_confirmed for f in files)
    refused = record.status == "FAILED" and not moved and record.error is not None \
        and record.error.get("type") in _REFUSALS
    return TransferPublic(
        **record.model_dump(exclude={"version", "options", "bytes_done", "files_done",
                                     "bytes_total", "files_total", "tickets", "status"}),
        status="REFUSED" if refused else record.status,
        tickets=record.tickets or None, ticket_links=ticket_links(settings, record.tickets),
        bytes_total=max(record.bytes_total, sum(f.size for f in files)),
        bytes_done=sum(f.bytes_confirmed for f in files),
        files_total=max(record.files_total, len(files)),
        files_done=sum(f.status == "DELIVERED" for f in files),
        cancel_requested=bool(record.options.get("cancel_requested")),
        files=[FilePublic(**f.model_dump(exclude={"version"})) for f in files] if detail
        else [], history=events)


async def transfers_public(settings: Settings, store: Store, *, status: str | None = None,
                           requester: str | None = None, destination: str | None = None,
                           limit: int = 50, cursor: str | None = None) -> TransfersPublic:
    """One page of transfers, ordered by id. ``destination`` is ``NAME:PATH`` as
    requested, or a bare ``NAME`` (every path there). Filtered by a bare name, or by
    FAILED/REFUSED, a page may hold fewer than ``limit``; ``next_cursor`` still leads
    on. A bad cursor is ValueError."""
    from fileferry.api.schemas import TransfersPublic

    exact = destination if destination is None or ":" in destination else None
    # The store keeps a refusal as FAILED (see transfer_public): both are read from there.
    stored = "FAILED" if status == "REFUSED" else status
    records, next_cursor = await store.list_transfers(stored, requester, exact, limit, cursor)
    if destination is not None and exact is None:
        records = [r for r in records if r.destination.partition(":")[0] == destination]
    views = [await transfer_public(settings, store, r.transfer_id, detail=False)
             for r in records]
    data = [v for v in views if v is not None and status in (None, v.status)]
    return TransfersPublic(data=data, count=len(data), next_cursor=next_cursor)


async def init_state_store(settings: Settings) -> list[SchemaEntry]:
    """Create the store's SQLite schema or DynamoDB tables (``fileferry store init``);
    running it again only reports what exists."""
    from fileferry.store import init_store

    return await init_store(settings.store.url)


async def pending_approvals(store: Store) -> list[dict[str, Any]]:
    """Every transfer waiting in ``PENDING_APPROVAL``: its approval request (``group``,
    ``requester``, ``requested_at``, ``timeout``) with ``transfer_id`` and ``decision``
    (what was decided, when a decision is in but the transfer has not moved on yet;
    else None), newest request first. A transfer marked pending without a request
    (a half-written record) is left out."""
    found: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        page, cursor = await store.list_transfers("PENDING_APPROVAL", limit=200, cursor=cursor)
        for record in page:
            request = await store.recorded("approval_request", record.transfer_id)
            if request is not None:
                done = await store.recorded("approval", record.transfer_id)
                found.append({**request, "transfer_id": record.transfer_id, "decision": done})
        if cursor is None:
            break
    found.sort(key=lambda r: float(r.get("requested_at") or 0), reverse=True)
    return found
