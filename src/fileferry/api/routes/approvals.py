"""Approvals over the API: a transfer in ``PENDING_APPROVAL`` is approved or rejected by
someone in the policy's approval group, never by its requester.

* ``GET /api/transfers/{id}/approval``: the pending request (group, requester,
  deadline) and whether the caller may decide it (the dashboard's buttons);
* ``POST /api/transfers/{id}/approve`` and ``/reject`` with ``{"reason": ...}``:
  ``services.approve_transfer`` / ``reject_transfer``, then the transfer is queued
  on this server's workers, which carry it on (it runs, or ends REFUSED).

* ``GET /api/approvals``: the transfers waiting for a decision that the caller may
  see (their approval groups' and their own; an operator's: all), newest first,
  each saying whether the caller may decide it (the dashboard's "Awaiting your
  approval" shows those).

403 for the requester or a non-member (the attempt is audited), 409 when the
transfer is not waiting for a decision (finished, decided, timed out). Reading a
transfer's approval needs seeing the transfer (identity/visibility.py): 404 otherwise.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field

from fileferry.api.auth import require_principal, visible_record
from fileferry.api.errors import ApiError, not_found
from fileferry.api.routes.transfers import TransferId
from fileferry.api.schemas import ErrorBody, TransferPublic
from fileferry.api.state import ServerState, State
from fileferry.errors import UsageError, ValidationError
from fileferry.identity.principal import Principal
from fileferry.identity.visibility import sees
from fileferry.services import (
    approve_transfer,
    pending_approvals,
    reject_transfer,
    transfer_public,
)

__all__ = ["ApprovalPublic", "ApprovalsPublic", "DecisionCreate", "listing", "router"]

router = APIRouter(prefix="/api/transfers", tags=["approvals"],
                   responses={code: {"model": ErrorBody} for code in (401, 403, 404, 409, 422)},
                   dependencies=[Depends(require_principal)])
listing = APIRouter(prefix="/api/approvals", tags=["approvals"],
                    responses={code: {"model": ErrorBody} for code in (401, 422)},
                    dependencies=[Depends(require_principal)])
Caller = Annotated[Principal, Depends(require_principal)]


class DecisionCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str | None = Field(default=None, max_length=1000,
                               description="why (goes to the audit trail and the ticket)")


class ApprovalPublic(BaseModel):
    transfer_id: str
    group: str
    requester: str
    requested_at: float
    deadline: float
    can_decide: bool
    """Whether the caller may approve or reject it (in the group, not the requester)."""
    why_not: str | None = None


class ApprovalsPublic(BaseModel):
    """The transfers waiting for a decision that the caller may see, newest first."""

    data: list[ApprovalPublic]
    count: int


def _view(request: dict[str, Any], caller: Principal) -> ApprovalPublic:
    """``request`` (the store's approval request, with ``transfer_id`` and ``decision``)
    as the caller sees it: may they decide, and if not, why."""
    group, requester = str(request["group"]), str(request["requester"])
    done = request.get("decision")
    why_not = (f"already {done['decision']} by {done['approver']}" if done
               else f"{caller.user} requested it; someone else in {group} must decide"
               if caller.user == requester else None if group in caller.groups
               else f"deciding needs membership of group {group}")
    return ApprovalPublic(transfer_id=str(request["transfer_id"]), group=group,
                          requester=requester, requested_at=float(request["requested_at"]),
                          deadline=float(request["requested_at"]) + float(request["timeout"]),
                          can_decide=why_not is None, why_not=why_not)


@listing.get("", response_model=ApprovalsPublic)
async def approvals(ff: State, caller: Caller,
                    limit: Annotated[int, Query(ge=1, le=500)] = 100) -> ApprovalsPublic:
    """Transfers in ``PENDING_APPROVAL`` the caller may see: those their approval groups
    decide, their own (``can_decide`` false, saying who must), and for an operator
    all; newest first, at most ``limit``."""
    shown = [_view(r, caller) for r in await pending_approvals(ff.store)
             if sees(ff.settings.sso, caller, str(r["requester"]), str(r["group"]))]
    return ApprovalsPublic(data=shown[:limit], count=len(shown[:limit]))


@router.get("/{transfer_id}/approval", response_model=ApprovalPublic)
async def approval(transfer_id: TransferId, ff: State, caller: Caller) -> ApprovalPublic:
    """The pending approval request; 409 when the transfer is not waiting for one, 404
    when the caller may not see the transfer."""
    record = await visible_record(ff.settings, ff.store, caller, transfer_id)
    request = await ff.store.recorded("approval_request", transfer_id)
    if request is None or record.status != "PENDING_APPROVAL":
        raise ApiError(409, "NotPending", f"{transfer_id} is {record.status.lower()}, not "
                       "waiting for approval")
    decision = await ff.store.recorded("approval", transfer_id)
    return _view({**request, "transfer_id": transfer_id, "decision": decision}, caller)


async def _decide(ff: ServerState, transfer_id: str, caller: Principal, approve: bool,
                  body: DecisionCreate) -> TransferPublic:
    if await ff.store.get_transfer(transfer_id) is None:
        raise not_found(transfer_id)
    act = approve_transfer if approve else reject_transfer
    try:
        await act(ff.settings, transfer_id, caller, body.reason, clock=time.time)
    except (ValidationError, UsageError) as exc:  # not pending, decided, timed out
        raise ApiError(409, "NotPending", str(exc)) from None
    # the workers carry it on (what continue_transfer does, on this server's pool)
    ff.pool.submit(transfer_id)
    view = await transfer_public(ff.settings, ff.store, transfer_id, detail=False)
    assert view is not None  # it was just decided
    return view


@router.post("/{transfer_id}/approve", status_code=202, response_model=TransferPublic)
async def approve(transfer_id: TransferId, ff: State, caller: Caller,
                  body: DecisionCreate | None = None) -> TransferPublic:
    """Approve it: the workers go on with the transfer. 403 for its requester or
    someone outside the approval group; 409 when nothing waits for a decision."""
    return await _decide(ff, transfer_id, caller, True, body or DecisionCreate())


@router.post("/{transfer_id}/reject", status_code=202, response_model=TransferPublic)
async def reject(transfer_id: TransferId, ff: State, caller: Caller,
                 body: DecisionCreate | None = None) -> TransferPublic:
    """Reject it: it ends REFUSED (ApprovalRejected), the ticket names who and why."""
    return await _decide(ff, transfer_id, caller, False, body or DecisionCreate())
