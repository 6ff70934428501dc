"""Approve or reject a transfer waiting in ``PENDING_APPROVAL``.

The decision itself is ``identity.approvals.decide`` (who may decide; a second
decision is refused); on Step Functions it is also sent to the execution waiting
on AWS. Carrying the transfer on afterwards is ``continue_transfer`` (``services.transfers``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from fileferry.config import Settings
from fileferry.identity.approvals import Decision, decide
from fileferry.identity.principal import Principal
from fileferry.store import open_store

__all__ = ["approve_transfer", "reject_transfer"]


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
