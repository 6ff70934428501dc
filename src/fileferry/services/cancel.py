"""Cancel a transfer: ask, by a flag in the store, the process running it to stop.

The process running a transfer watches the flag (locally the runner's watcher in
``services.transfers``, on Lambda ``aws.cancel``); a transfer parked for approval
has no such process, so ``stop_if_parked`` carries its cancel out.
"""

from __future__ import annotations

from fileferry.config import Settings
from fileferry.models import TransferResult
from fileferry.services.transfers import continue_transfer
from fileferry.store import Store, open_store

__all__ = ["mark_cancel_requested", "request_cancel", "stop_if_parked"]


async def request_cancel(settings: Settings, transfer_id: str) -> bool:
    """Ask the process running the transfer to stop it (it polls the store); a transfer
    parked for approval is stopped by ``stop_if_parked``."""
    if settings.workflow.engine == "stepfunctions":
        from fileferry.aws.stepfunctions import cancel_on_aws

        return await cancel_on_aws(settings, transfer_id)
    store = open_store(settings.store.url)
    try:
        return await mark_cancel_requested(store, transfer_id)
    finally:
        await store.close()


async def mark_cancel_requested(store: Store, transfer_id: str) -> bool:
    """Set the transfer's ``cancel_requested`` flag, which the process running it polls
    (locally ``transfers._watch_cancel``, on Lambda ``aws.cancel``); False for an unknown or
    already final transfer (nothing to stop)."""
    record = await store.get_transfer(transfer_id)
    if record is None or record.status in ("SUCCEEDED", "FAILED", "CANCELLED", "REFUSED"):
        return False
    await store.update_transfer(transfer_id, options={**record.options, "cancel_requested": True})
    return True


async def stop_if_parked(settings: Settings, transfer_id: str) -> TransferResult | None:
    """Carry out a requested cancel of a transfer parked for approval (nobody runs it);
    None when it is not parked."""
    store = open_store(settings.store.url)
    try:
        record = await store.get_transfer(transfer_id)
    finally:
        await store.close()
    if record is None or record.status != "PENDING_APPROVAL":
        return None
    return await continue_transfer(settings, transfer_id)
