"""Deliver the ticket and notification work queued in the outbox during an outage."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fileferry.config import Settings
from fileferry.integrations.outbox import drain
from fileferry.services._common import close_deps, deliverers, make_deps
from fileferry.store import open_store
from fileferry.workflow.steps.deps import Deps

if TYPE_CHECKING:
    from fileferry.integrations.outbox import DrainReport

__all__ = ["deliver_pending", "drain_outbox"]


async def deliver_pending(settings: Settings) -> int:
    """Deliver ticket and notification work queued during an outage; returns how much
    is still pending (0 when everything was delivered or was refused for good)."""
    store = open_store(settings.store.url)
    deps = make_deps(settings, store)
    try:
        return (await drain(deliverers(deps), store)).pending
    finally:
        await close_deps(deps)
        await store.close()


async def drain_outbox(deps: Deps) -> DrainReport:
    """``deliver_pending`` over ports already made (``FileFerry-DeliverPending`` on AWS)."""
    return await drain(deliverers(deps), deps.store)
