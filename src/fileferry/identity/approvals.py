"""Approve or reject a transfer waiting in ``PENDING_APPROVAL`` (``decide``; the CLI, the
API and the dashboard reach it through ``services.approve_transfer`` / ``reject_transfer``).

Only someone in the policy's approval group may decide, never the requester;
the first decision wins (a second one, or one after the timeout, is refused);
every decision and every refused attempt is in the audit trail. A decision is
reported for the waiting task's token; the process waiting for it (or the next
``resume``) carries the transfer on.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Literal

from fileferry.errors import NotAuthorized, UsageError, ValidationError
from fileferry.identity.principal import Principal
from fileferry.store import FINAL_STATUSES, Store
from fileferry.workflow.callbacks import send_task_failure, send_task_success, task_outcome

__all__ = ["Decision", "decide"]

Decision = Literal["approved", "rejected"]


async def _pending(store: Store, transfer_id: str) -> dict[str, Any]:
    record = await store.get_transfer(transfer_id)
    if record is None:
        raise UsageError(f"no transfer {transfer_id}")
    request = await store.recorded("approval_request", transfer_id)
    if record.status in FINAL_STATUSES:
        raise ValidationError(f"{transfer_id} is {record.status}: there is nothing to decide")
    if request is None:
        raise ValidationError(f"{transfer_id} is not waiting for approval (it is "
                              f"{record.status})")
    done = await store.recorded("approval", transfer_id)
    if done is not None:
        raise ValidationError(f"{transfer_id} was already {done['decision']} by "
                              f"{done['approver']}")
    return request


async def _refuse(store: Store, transfer_id: str, principal: Principal, decision: Decision,
                  why: str, now: float) -> None:
    await store.append_audit(transfer_id, "approval_refused",
                             {"by": principal.user, "decision": decision, "why": why}, now)
    raise NotAuthorized(why)


async def decide(store: Store, transfer_id: str, principal: Principal, decision: Decision,
                 reason: str | None = None, *,
                 clock: Callable[[], float] = time.time) -> dict[str, Any]:
    """Record ``decision`` for the pending transfer; what was recorded.

    Raises UsageError (no such transfer), ValidationError (not pending, already
    decided, timed out) or NotAuthorized (the requester, or not in the group).
    """
    now = clock()
    request = await _pending(store, transfer_id)
    group, token = str(request["group"]), str(request["callback_id"])
    if principal.user == request["requester"]:
        await _refuse(store, transfer_id, principal, decision,
                      f"{principal.user} requested {transfer_id} and cannot decide on it; "
                      f"someone else in group {group} must", now)
    if group not in principal.groups:
        await _refuse(store, transfer_id, principal, decision,
                      f"deciding on {transfer_id} needs membership of group {group}, and "
                      f"{principal.user} is not a member", now)
    if now >= float(request["requested_at"]) + float(request["timeout"]):
        await store.record_once("callback_outcome", token, {"status": "TIMED_OUT"})
    outcome = {"decision": decision, "approver": principal.user, "reason": reason, "at": now}
    if decision == "approved":
        first = await send_task_success(store, token, {"approver": principal.user,
                                                       "reason": reason})
    else:
        first = await send_task_failure(store, token, "ApprovalRejected",
                                        f"rejected by {principal.user}"
                                        + (f": {reason}" if reason else ""))
    if not first:
        earlier = await task_outcome(store, token) or {}
        what = "timed out" if earlier.get("status") == "TIMED_OUT" else "already decided"
        raise ValidationError(f"{transfer_id}: too late, the approval {what}")
    await store.record_once("approval", transfer_id, outcome)
    await store.append_audit(transfer_id, decision, {**outcome, "group": group}, now)
    return {"transfer_id": transfer_id, **outcome}
