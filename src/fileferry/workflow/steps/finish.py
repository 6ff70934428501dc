"""CreateTickets, VerifyDelivery, UpdateServiceNow, NotifyUser, CleanupAndLogout, HandleError."""

from __future__ import annotations

import asyncio
from typing import Any

from fileferry.errors import VerificationFailed
from fileferry.transfer.copy import remove_quietly, temp_name
from fileferry.workflow.models import (
    CleanupIn,
    CreateTicketsIn,
    Handled,
    HandleErrorIn,
    NotifyIn,
    SessionIn,
    SessionOut,
    Tickets,
    UpdateTicketsIn,
    VerifyIn,
    VerifyOut,
)
from fileferry.workflow.steps.access import authorised_destination
from fileferry.workflow.steps.deps import Deps

__all__ = ["authenticate_sso", "cleanup_and_logout", "create_tickets", "handle_error",
           "notify_user", "remove_leftovers", "update_servicenow", "verify_delivery"]


async def authenticate_sso(inp: SessionIn, deps: Deps) -> SessionOut:
    """Open the transfer's session and check the partner's credentials resolve under it."""
    session = await deps.sessions.open(inp.transfer_id, inp.requester, inp.destination)
    await deps.sessions.use(inp.transfer_id, session.session_id, "credentials")
    await asyncio.to_thread(deps.secrets.destination, inp.destination)  # fail early
    await deps.store.update_transfer(inp.transfer_id, status="RUNNING",  # approved, if asked
                                     updated_at=deps.clock())
    return session.model_copy(update={"secret_ref": deps.secrets.reference(inp.destination)})


async def create_tickets(inp: CreateTicketsIn, deps: Deps) -> Tickets:
    facts = inp.model_dump()
    approval = await deps.store.recorded("approval", inp.transfer_id)
    if approval is not None:  # the audit ticket names the approver
        facts.update(approver=approval["approver"], approval_reason=approval.get("reason"))
    tickets = await deps.ticketing.create(inp.transfer_id, facts)
    await deps.store.update_transfer(inp.transfer_id, tickets=tickets.model_dump())
    return tickets


async def verify_delivery(inp: VerifyIn, deps: Deps) -> VerifyOut:
    """Each final name holds a file of the delivered size (the bytes were proved before)."""
    records = [f for f in await deps.store.get_files(inp.transfer_id)
               if f.status == "DELIVERED"]
    async with authorised_destination(deps, inp.transfer_id, inp.destination, purpose="verify",
                                      session_id=inp.session_id) as (_, dest):
        for record in records:
            info = await dest.stat(record.destination)
            if info is None or info.size != record.size:
                found = "nothing" if info is None else f"{info.size} bytes"
                raise VerificationFailed(f"{record.destination}: expected {record.size} bytes "
                                         f"after delivery, found {found}")
    return VerifyOut(files=len(records), bytes=sum(r.size for r in records))


async def update_servicenow(inp: UpdateTicketsIn, deps: Deps) -> None:
    files = await deps.store.get_files(inp.transfer_id)
    notes = {"files": [{"destination": f.destination, "size": f.size, "sha256": f.sha256,
                        "verified_by": f.verified_by} for f in files if f.status == "DELIVERED"]}
    await deps.ticketing.update(inp.transfer_id, inp.tickets, inp.outcome, notes)


async def notify_user(inp: NotifyIn, deps: Deps) -> None:
    if inp.outcome == "SUCCEEDED" and inp.delivery is not None:
        text = f"{inp.transfer_id}: delivered {inp.delivery.files} file(s), verified"
    else:
        text = f"{inp.transfer_id}: {inp.outcome.lower()}"
    await deps.notifier.notify(inp.transfer_id, inp.requester, inp.outcome, text)


async def remove_leftovers(deps: Deps, transfer_id: str, destination: str,
                           session_id: str | None = None) -> None:
    pending = [f for f in await deps.store.get_files(transfer_id) if f.status != "DELIVERED"]
    if not pending:
        return
    async with authorised_destination(deps, transfer_id, destination, purpose="cleanup",
                                      session_id=session_id) as (_, dest):
        for record in pending:
            await remove_quietly(dest, temp_name(record.destination, transfer_id[-8:]))


async def cleanup_and_logout(inp: CleanupIn, deps: Deps) -> None:
    """Log out at once, then remove leftovers (under a short session of their own)."""
    state = inp.state
    session = state.get("session") or {}
    plan = state.get("plan") or {}
    await deps.sessions.close(inp.transfer_id, session.get("session_id"))
    if plan.get("destination_name"):
        await remove_leftovers(deps, inp.transfer_id, plan["destination_name"])
    await deps.store.update_transfer(inp.transfer_id, status=inp.outcome,
                                     updated_at=deps.clock())


async def handle_error(inp: HandleErrorIn, deps: Deps) -> Handled:
    """Record the error, put it on both tickets, notify; ``inp.outcome`` CANCELLED is a
    stopped execution (``steps.ended``), which the tickets and the notice say as such."""
    error: dict[str, Any] = inp.state.get("error") or {}
    name, cause = str(error.get("Error", "States.Runtime")), str(error.get("Cause", ""))
    await deps.store.update_transfer(inp.transfer_id, error={"type": name, "message": cause},
                                     updated_at=deps.clock())
    await deps.store.append_audit(inp.transfer_id, inp.outcome.lower(),
                                  {"error": name, "cause": cause}, deps.clock())
    tickets = inp.state.get("tickets")
    if not tickets:  # a denial gets its tickets before the workflow's CreateTickets
        record = await deps.store.get_transfer(inp.transfer_id)
        tickets = record.tickets if record is not None else None
    await deps.ticketing.update(inp.transfer_id,
                                Tickets.model_validate(tickets) if tickets else None,
                                inp.outcome, {"error": name, "cause": cause})
    text = (f"{inp.transfer_id} was cancelled" if inp.outcome == "CANCELLED"
            else f"{inp.transfer_id} failed: {name}: {cause}")
    await deps.notifier.notify(inp.transfer_id, str(inp.state.get("requester", "")),
                               inp.outcome, text)
    return Handled(error=name, cause=cause)
