"""AwaitApproval's invocation: record who must decide, and mark the transfer PENDING_APPROVAL.

Idempotent: a resumed execution invokes it again with the same callback id;
the request is recorded (and audited) once.
"""

from __future__ import annotations

from fileferry.workflow.models import ApprovalIn
from fileferry.workflow.steps.deps import Deps

__all__ = ["request_approval"]


async def request_approval(inp: ApprovalIn, deps: Deps) -> None:
    now = deps.clock()
    first, _ = await deps.store.record_once("approval_request", inp.transfer_id, {
        "callback_id": inp.callback_id, "requester": inp.requester, "group": inp.group,
        "policy": inp.policy, "timeout": inp.timeout, "requested_at": now})
    if first:
        await deps.store.append_audit(inp.transfer_id, "approval_requested", {
            "group": inp.group, "policy": inp.policy, "timeout": inp.timeout}, now)
    await deps.store.update_transfer(inp.transfer_id, status="PENDING_APPROVAL",
                                     updated_at=now)
