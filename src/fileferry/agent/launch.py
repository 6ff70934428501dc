"""How a confirmed plan becomes a transfer: recorded with its tickets, then run.

``record_transfer_for`` records the transfer (PENDING) under the plan's transfer id
with the principal's groups, as the workflow's policy check needs them. Tickets
made ahead of the run (``create_servicenow_tickets``) are the very ones the
workflow's ``CreateTickets`` step finds later: ticketing is idempotent per
transfer id.

Two launchers run it: ``InlineLauncher`` (``fileferry chat``: the workflow runs
in this process and the tool returns its result) and ``QueuedLauncher`` (the API
server: queued on its worker pool, the tool returns at once and the dashboard
follows the transfer's event stream).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

from fileferry.agent.planning import Plan
from fileferry.config import Settings
from fileferry.identity.principal import Principal
from fileferry.models import TransferResult
from fileferry.services import execution_id_for, make_deps, submit_transfer
from fileferry.store import open_store
from fileferry.transfer.engine import TransferRequest
from fileferry.transfer.progress import ProgressSubscriber
from fileferry.workflow.models import ExecutionInput, Tickets
from fileferry.workflow.steps.deps import Deps
from fileferry.workflow.steps.validate import ensure_transfer

__all__ = ["InlineLauncher", "Launcher", "QueuedLauncher", "cancel_recorded",
           "create_tickets", "record_transfer_for", "request_for"]


async def _close(deps: Deps) -> None:
    """Ticketing clients that hold connections (ServiceNow) are closed with the store."""
    closer = getattr(deps.ticketing, "close", None)
    if closer is not None:
        await closer()


def request_for(plan: Plan) -> TransferRequest:
    return TransferRequest(sources=list(plan.sources), destination=plan.destination,
                           requester=plan.requester, transfer_id=plan.transfer_id)


async def record_transfer_for(settings: Settings, plan: Plan, principal: Principal,
                              options: dict[str, Any]) -> None:
    """Record the plan's transfer (PENDING); recording it again changes nothing but
    ``options``, which are merged in."""
    store = open_store(settings.store.url)
    deps = make_deps(settings, store)
    try:
        payload = ExecutionInput(transfer_id=plan.transfer_id, requester=principal.user,
                                 groups=sorted(principal.groups), sources=list(plan.sources),
                                 destination=plan.destination, options=options)
        await ensure_transfer(payload, deps, execution_id_for(plan.transfer_id))
        record = await store.get_transfer(plan.transfer_id)
        if record is not None and any(record.options.get(k) != v for k, v in options.items()):
            await store.update_transfer(plan.transfer_id, options={**record.options, **options})
    finally:
        await _close(deps)
        await store.close()


def ticket_facts(plan: Plan) -> dict[str, Any]:
    """What the tickets say: the same fields the workflow's CreateTickets step sends."""
    return {"transfer_id": plan.transfer_id, "requester": plan.requester,
            "destination": plan.destination, "sources": list(plan.sources),
            "bytes_total": plan.total_bytes, "files_total": plan.count, "policy": plan.policy}


async def create_tickets(settings: Settings, plan: Plan, principal: Principal) -> Tickets:
    """The user and audit tickets of the plan's transfer (created once per transfer)."""
    await record_transfer_for(settings, plan, principal, {"created_by": "agent"})
    store = open_store(settings.store.url)
    deps = make_deps(settings, store)
    try:
        tickets = await deps.ticketing.create(plan.transfer_id, ticket_facts(plan))
        await store.update_transfer(plan.transfer_id, tickets=tickets.model_dump())
        return tickets
    finally:
        await _close(deps)
        await store.close()


async def cancel_recorded(settings: Settings, transfer_id: str, reason: str) -> bool:
    """Close a transfer recorded for a plan that will not run (it changed before it was
    executed): its tickets are updated CANCELLED. False when it was never recorded."""
    store = open_store(settings.store.url)
    deps = make_deps(settings, store)
    try:
        record = await store.get_transfer(transfer_id)
        if record is None or record.status != "PENDING":
            return False
        tickets = Tickets.model_validate(record.tickets) if record.tickets else None
        if tickets is not None:
            await deps.ticketing.update(transfer_id, tickets, "CANCELLED", {"reason": reason})
        await store.update_transfer(transfer_id, status="CANCELLED")
        return True
    finally:
        await _close(deps)
        await store.close()


class Launcher(Protocol):
    async def start(self, plan: Plan, principal: Principal) -> dict[str, Any]:
        """Start the plan's transfer; what the tool reports (``transfer_id``, ``status``)."""


class InlineLauncher:
    """Runs the workflow here, to the end (``fileferry chat``)."""

    def __init__(self, settings: Settings,
                 subscribers: Sequence[ProgressSubscriber] = ()) -> None:
        self._settings, self._subscribers = settings, subscribers

    async def start(self, plan: Plan, principal: Principal) -> dict[str, Any]:
        await record_transfer_for(self._settings, plan, principal, {"created_by": "agent"})
        result = await self._submit(request_for(plan), principal)
        delivered = sum(f.status == "DELIVERED" for f in result.files)
        return {"transfer_id": result.transfer_id, "status": result.status,
                "files_delivered": delivered, "files_total": len(result.files),
                "tickets": result.tickets, "error": result.error}

    async def _submit(self, request: TransferRequest, principal: Principal) -> TransferResult:
        # a transfer that needs approval is parked (PENDING_APPROVAL), not waited for:
        # the chat goes on, and `fileferry approve` carries it on
        return await submit_transfer(self._settings, request, self._subscribers,
                                     principal=principal, wait_for_approval=False)


class QueuedLauncher:
    """Queues the transfer on a server's workers; ``submit(transfer_id)`` queues one."""

    def __init__(self, settings: Settings, submit: Callable[[str], bool]) -> None:
        self._settings, self._submit = settings, submit

    async def start(self, plan: Plan, principal: Principal) -> dict[str, Any]:
        await record_transfer_for(self._settings, plan, principal,
                                  {"created_by": "agent", "queued_by": "api"})
        self._submit(plan.transfer_id)
        return {"transfer_id": plan.transfer_id, "status": "PENDING",
                "events": f"/api/transfers/{plan.transfer_id}/events"}
