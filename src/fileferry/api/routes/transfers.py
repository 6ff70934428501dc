"""``/api/transfers``: start, list, show, cancel, and follow transfers live.

Each route calls the same service functions as the CLI (``fileferry.services``).
With ``sso:`` a caller sees only what ``identity/visibility.py`` lets them: the list
is their own transfers (operators: everyone's), a transfer they may not see is a
404 like an unknown id, and only its requester or an operator may cancel it.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Response
from fastapi.responses import StreamingResponse

from fileferry.api.auth import policy_denial, requester_for, require_principal, visible_record
from fileferry.api.errors import ApiError, field_errors, not_found
from fileferry.api.events import event_stream
from fileferry.api.schemas import (
    TRANSFER_ID_PATTERN,
    ErrorBody,
    TransferCreate,
    TransferEvent,
    TransferPublic,
    TransfersPublic,
)
from fileferry.api.state import State
from fileferry.identity.principal import Principal
from fileferry.identity.visibility import cancel_denial, is_operator, listing_denial
from fileferry.models import new_transfer_id
from fileferry.services import (
    check_destination,
    check_sources,
    record_transfer,
    request_cancel,
    transfer_public,
    transfers_public,
)
from fileferry.store import FINAL_STATUSES, TransferRecordStatus
from fileferry.transfer.engine import TransferRequest

__all__ = ["router"]

ERRORS: dict[int | str, dict[str, object]] = {
    code: {"model": ErrorBody} for code in (401, 403, 404, 409, 422)}
router = APIRouter(prefix="/api/transfers", tags=["transfers"], responses=ERRORS,
                   dependencies=[Depends(require_principal)])
TransferId = Annotated[str, Path(pattern=TRANSFER_ID_PATTERN, description="tr-…")]
Caller = Annotated[Principal, Depends(require_principal)]
SSE_HEADERS = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}


@router.post("", status_code=202, response_model=TransferPublic)
async def create_transfer(body: TransferCreate, ff: State, caller: Caller,
                          response: Response) -> TransferPublic:
    """Record the transfer and queue it; 202 at once, before any byte moves. Sources
    and destination are checked first: nothing is recorded for a malformed request.
    With ``sso:`` the requester is the token's user (``options.requester`` is only for
    the shared api.token). A policy denial is 403 naming the rules; the transfer is
    still recorded and run to its refusal, so the audit trail and ticket have it."""
    request = TransferRequest(sources=body.sources, destination=body.destination,
                              requester=requester_for(caller, body.options.requester),
                              transfer_id=new_transfer_id())
    for i, source in enumerate(body.sources):
        with field_errors(f"sources[{i}]"):
            check_sources([source])
    with field_errors("destination"):
        check_destination(ff.settings, body.destination)
    await record_transfer(ff.settings, request, {"queued_by": "api"}, groups=caller.groups)
    ff.pool.submit(request.transfer_id)
    denial = policy_denial(ff.settings, request, caller)
    if denial is not None:  # the workflow records the denial and its audit ticket
        raise ApiError(403, "PolicyDenied", f"{request.transfer_id}: {denial}")
    view = await transfer_public(ff.settings, ff.store, request.transfer_id)
    assert view is not None  # just recorded
    response.headers["Location"] = f"/api/transfers/{request.transfer_id}"
    return view


@router.get("", response_model=TransfersPublic)
async def list_transfers(
    ff: State,
    caller: Caller,
    status: Annotated[TransferRecordStatus | None, Query()] = None,
    requester: Annotated[str | None, Query(max_length=100)] = None,
    destination: Annotated[str | None, Query(max_length=1024,
                                             description="NAME, or NAME:PATH")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=2048,
                                        description="next_cursor of the page before")] = None,
) -> TransfersPublic:
    """A page of transfers ordered by id, filtered by every parameter given. With
    ``sso:`` a non-operator's list is their own transfers (the requester filter is
    forced to them; naming someone else is 403)."""
    denial = listing_denial(ff.settings.sso, caller, requester)
    if denial is not None:
        raise ApiError(403, "NotAuthorized", denial,
                       [{"field": "requester", "message": denial}])
    if not is_operator(ff.settings.sso, caller):
        requester = caller.user  # a store filter, so the pages and cursors stay right
    try:
        return await transfers_public(ff.settings, ff.store, status=status,
                                      requester=requester, destination=destination,
                                      limit=limit, cursor=cursor)
    except ValueError as exc:  # only the cursor can be malformed here
        raise ApiError(422, "UsageError", f"cursor: {exc}",
                       [{"field": "cursor", "message": str(exc)}]) from None


@router.get("/{transfer_id}", response_model=TransferPublic)
async def get_transfer(transfer_id: TransferId, ff: State, caller: Caller) -> TransferPublic:
    """The transfer with its files (size, SHA-256, check, retries), tickets and history;
    404 when the caller may not see it."""
    await visible_record(ff.settings, ff.store, caller, transfer_id)
    view = await transfer_public(ff.settings, ff.store, transfer_id)
    if view is None:
        raise not_found(transfer_id)
    return view


@router.post("/{transfer_id}/cancel", status_code=202, response_model=TransferPublic)
async def cancel_transfer(transfer_id: TransferId, ff: State, caller: Caller
                          ) -> TransferPublic:
    """Ask the process running it to stop cleanly; 409 when it has finished already.
    Only its requester or an operator may (403; an approver only reads it); 404 when
    the caller may not see it."""
    record = await visible_record(ff.settings, ff.store, caller, transfer_id)
    denial = cancel_denial(ff.settings.sso, caller, transfer_id, record.requester)
    if denial is not None:
        raise ApiError(403, "NotAuthorized", denial)
    view = await transfer_public(ff.settings, ff.store, transfer_id, detail=False)
    if view is None:
        raise not_found(transfer_id)
    if view.status in FINAL_STATUSES or not await request_cancel(ff.settings, transfer_id):
        raise ApiError(409, "NotRunning", f"{transfer_id} is {view.status.lower()}; only "
                       "a pending or running transfer can be cancelled")
    if view.status == "PENDING_APPROVAL" and ff.settings.workflow.engine == "embedded":
        # parked: nobody polls its cancel flag, so the workers carry the cancel out (as
        # services.stop_if_parked does; a CLI still waiting for it holds the lease and
        # stops it itself)
        ff.pool.submit(transfer_id)
    view.cancel_requested = True
    return view


@router.get("/{transfer_id}/events", response_class=StreamingResponse,
            responses={200: {"content": {"text/event-stream": {}},
                             "description": "Server-Sent Events: progress, file, status"}})
async def transfer_events(transfer_id: TransferId, ff: State, caller: Caller
                          ) -> StreamingResponse:
    """Server-Sent Events for one transfer: its state now, then ``progress``, ``file``
    and ``status`` events; the stream ends after the final status. 404 when the caller
    may not see it."""
    await visible_record(ff.settings, ff.store, caller, transfer_id)

    async def snapshot() -> list[TransferEvent]:
        view = await transfer_public(ff.settings, ff.store, transfer_id, detail=False)
        return [] if view is None else [TransferEvent(
            type="status", transfer=view, final=view.status in FINAL_STATUSES)]

    return StreamingResponse(event_stream(ff.bus, transfer_id, snapshot),
                             media_type="text/event-stream", headers=SSE_HEADERS)
