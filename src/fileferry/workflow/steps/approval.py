"""AwaitApproval's invocation: record who must decide, and mark the transfer PENDING_APPROVAL.

The approval request is recorded (and audited) once per transfer, but its task
token is the latest one: a retried or redriven AwaitApproval Task on Step
Functions (its Retry lists IdempotencyAlreadyInProgressError and the Lambda
service errors) gets a NEW token and the old one is dead, so the decision must
go to the new one. The other facts (requester, group, policy, timeout and
``requested_at``, which the approval timeout counts from) stay those of the
first request.

Edge cases:

* The same token again (the embedded runner resuming an execution): nothing
  changes.
* Two invocations racing (a slow first attempt finishing after its retry
  started): a token is only replaced by one whose invocation started later
  (``renewed_at``), so a late old attempt cannot put its dead token back.
"""

from __future__ import annotations

from typing import Any

from fileferry.workflow.models import ApprovalIn
from fileferry.workflow.steps.deps import Deps

__all__ = ["request_approval"]


async def request_approval(inp: ApprovalIn, deps: Deps) -> None:
    now = deps.clock()
    request = {"callback_id": inp.callback_id, "requester": inp.requester, "group": inp.group,
               "policy": inp.policy, "timeout": inp.timeout, "requested_at": now,
               "renewed_at": now}
    first, stored = await deps.store.record_once("approval_request", inp.transfer_id, request)
    if first:
        await deps.store.append_audit(inp.transfer_id, "approval_requested", {
            "group": inp.group, "policy": inp.policy, "timeout": inp.timeout}, now)
    elif stored.get("callback_id") != inp.callback_id:
        await _renew_token(inp, deps, now, request)
    await deps.store.update_transfer(inp.transfer_id, status="PENDING_APPROVAL",
                                     updated_at=now)


async def _renew_token(inp: ApprovalIn, deps: Deps, now: float,
                       request: dict[str, Any]) -> None:
    """Make ``inp.callback_id`` the token a decision is sent to, unless a newer one is."""
    replaced: list[bool] = []

    def newer(current: dict[str, Any] | None) -> dict[str, Any] | None:
        replaced.clear()  # may run again after a lost race
        if current is None:
            return request
        if current.get("callback_id") == inp.callback_id or \
                float(current.get("renewed_at", current.get("requested_at", 0))) > now:
            return None
        replaced.append(True)
        return {**current, "callback_id": inp.callback_id, "renewed_at": now}

    await deps.store.update_recorded("approval_request", inp.transfer_id, newer)
    if replaced:
        # the token itself stays out of the audit trail: it is a handle for Step Functions
        await deps.store.append_audit(inp.transfer_id, "approval_token_renewed", {
            "group": inp.group, "policy": inp.policy}, now)
