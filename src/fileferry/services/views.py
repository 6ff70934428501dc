"""Read-only views of transfers, from the store: what ``transfer --json``, ``status``,
``list``, the API and the agent show. Nothing here writes to the store.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fileferry.config import Settings
from fileferry.integrations.outbox import lane
from fileferry.models import FileResult, TransferResult
from fileferry.services._common import REFUSALS
from fileferry.store import Store
from fileferry.workflow.asl import ExecutionResult

if TYPE_CHECKING:
    from fileferry.api.schemas import TransferPublic, TransfersPublic

__all__ = ["pending_approvals", "ticket_links", "transfer_public", "transfer_result",
           "transfers_public"]


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
    elif error["type"] in REFUSALS and not moved:
        status, results = "REFUSED", []
    else:
        status = "FAILED"
    return TransferResult(transfer_id=transfer_id, status=status,
                          execution_id=record.execution_id if record else None,
                          files=results, error=error,
                          tickets=(record.tickets or None) if record else None,
                          tickets_pending=pending)


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
        and record.error.get("type") in REFUSALS
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
