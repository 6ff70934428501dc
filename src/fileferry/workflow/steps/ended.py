"""SettleEnded: an execution that ended without its own error path ran to its end.

On Step Functions, ``StopExecution`` (``fileferry cancel``) ends an execution
ABORTED at once: HandleError and CleanupAfterError never run. The same holds
for an execution over its time limit (TIMED_OUT), and for one that FAILED
where HandleError itself could not run (its function throttled or broken, a
``States.Runtime`` error). This step, run from the execution's status-change
event (``FileFerry-AbortCleanup``), does what the workflow's error path does,
through the same steps: ``handle_error`` (the error on the record, both
tickets updated — queued in the outbox while ServiceNow is down —, the
requester notified), then ``cleanup_and_logout`` (sessions closed, the
transfer's hidden temporary files removed at the destination, the record
marked final). ABORTED is CANCELLED; TIMED_OUT and FAILED are FAILED.

Edge cases:

* It is idempotent: a record already final whose tickets were updated (or
  whose update waits in the outbox) is left alone, so the FAILED event that
  follows a normal HandleError run, or a second delivery of the same event,
  changes nothing. Each port is idempotent besides (tickets and notices once
  per transfer and outcome; removing a missing file is not an error).
* A record final without a ticket update (a CLI that saw ABORTED and wrote
  CANCELLED first) is still settled, keeping its status's outcome.
* No record at all (an execution started by hand, see docs/deploy.md): nothing
  to settle; the result says so.
* Delivered files stay: only files not yet delivered have temporary names.
"""

from __future__ import annotations

from typing import Any, Literal

from fileferry.store import TransferRecord
from fileferry.store.models import FINAL_STATUSES
from fileferry.workflow.models import CleanupIn, EndedIn, HandleErrorIn, Settled
from fileferry.workflow.steps.deps import Deps
from fileferry.workflow.steps.finish import cleanup_and_logout, handle_error

__all__ = ["settle_ended"]

Outcome = Literal["FAILED", "CANCELLED"]
_DEFAULT_ERRORS = {
    "ABORTED": ("Cancelled", "the execution was stopped (fileferry cancel or StopExecution)"),
    "TIMED_OUT": ("States.Timeout", "the execution ran past the state machine's time limit"),
    "FAILED": ("States.Runtime", "the execution failed before its error handling could run"),
}


async def _already_settled(deps: Deps, record: TransferRecord) -> bool:
    """Final, and the tickets were told (or their update waits in the outbox)."""
    if record.status not in FINAL_STATUSES:
        return False
    tid = record.transfer_id
    for outcome in ("SUCCEEDED", "FAILED", "CANCELLED"):
        if await deps.store.recorded("ticket_update", f"{tid}:{outcome}") is not None:
            return True
    return any(entry.op == "update" for entry in await deps.store.work(tid))


def _outcome(inp: EndedIn, record: TransferRecord) -> Outcome:
    if record.status == "CANCELLED":  # a CLI that saw ABORTED wrote it first
        return "CANCELLED"
    return "CANCELLED" if inp.status == "ABORTED" else "FAILED"


async def _sessions(deps: Deps, transfer_id: str) -> list[str]:
    """Every session the transfer opened (the execution's own state is gone)."""
    return [str(e.detail["session_id"]) for e in await deps.store.audit(transfer_id)
            if e.event == "session_opened" and e.detail.get("session_id")]


async def settle_ended(inp: EndedIn, deps: Deps) -> Settled:
    """Run the error path for an execution that ended without it (see the module doc)."""
    record = await deps.store.get_transfer(inp.transfer_id)
    if record is None:
        return Settled(transfer_id=inp.transfer_id, outcome=None,
                       reason="no such transfer in the store; nothing to clean up")
    if await _already_settled(deps, record):
        return Settled(transfer_id=inp.transfer_id, outcome=None,
                       reason=f"already {record.status} with its tickets updated")
    outcome = _outcome(inp, record)
    name, cause = _DEFAULT_ERRORS[inp.status]
    sessions = await _sessions(deps, inp.transfer_id)
    for session_id in sessions[:-1]:  # cleanup_and_logout closes the last one
        await deps.sessions.close(inp.transfer_id, session_id)
    state: dict[str, Any] = {
        "requester": record.requester,
        "tickets": record.tickets or None,
        "error": {"Error": inp.error or name, "Cause": inp.cause or cause},
        "plan": {"destination_name": record.destination.partition(":")[0]},
        "session": {"session_id": sessions[-1] if sessions else None},
    }
    await handle_error(HandleErrorIn(transfer_id=inp.transfer_id, state=state,
                                     outcome=outcome), deps)
    await cleanup_and_logout(CleanupIn(transfer_id=inp.transfer_id, state=state,
                                       outcome=outcome), deps)
    return Settled(transfer_id=inp.transfer_id, outcome=outcome,
                   reason=f"execution {inp.status}: {inp.error or name}")
