"""A durable outbox: ServiceNow or webhook outages never stop a transfer.

When the ticket system is unavailable (:class:`~fileferry.errors.EndpointUnavailable`:
timeouts, 5xx, 429 storms, an open circuit breaker), the work is queued in the store
(``outbox`` table) and the step returns at once, so the transfer carries on and can
SUCCEED; the tickets read ``"pending"`` until :func:`drain` delivers the work, in the
order it was queued, when the system is back (the CLI waits up to
``servicenow.flush_timeout``; ``fileferry resume`` and the server drain it later).
A notification a channel could not take after its retries is queued the same way
(``op`` ``notify``) by :class:`~fileferry.integrations.notify.WebhookNotifier`.

Work runs in lanes: the transfer's tickets are one lane, each notification channel
another. Once a lane has queued work, everything after it in that lane is queued too
(an update must never reach ServiceNow before the create it depends on), and a drain
stops a lane at its first piece that still fails. Other errors (bad credentials, a
data policy, a 4xx) are not outages: they fail the step, or, met while draining, mark
the work failed in the audit trail. Delivering relies on each port being idempotent
(tickets keyed by correlation id), and a lease per transfer keeps two drainers (a CLI
and a server) from racing on the same work.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from fileferry.errors import EndpointUnavailable, FileFerryError
from fileferry.store import OutboxEntry, Store
from fileferry.workflow.models import Tickets
from fileferry.workflow.ports import Ticketing

__all__ = ["NOT_CREATED", "PENDING", "Deliverer", "DrainReport", "OutboxTicketing", "drain",
           "flush", "lane"]

log = logging.getLogger(__name__)

PENDING = "pending"  # what a ticket number reads until the outbox delivers it
NOT_CREATED = "not created"  # ... and after ServiceNow refused to create it for good
LEASE_TTL = 120.0


class Deliverer(Protocol):
    async def deliver(self, transfer_id: str, entry: OutboxEntry) -> None:
        """Do one piece of queued work now; EndpointUnavailable: try again later,
        another FileFerryError: it never will succeed."""


def lane(entry: OutboxEntry) -> str:
    """Work in one lane is delivered in order; lanes do not wait for each other."""
    return "tickets" if entry.op in ("create", "update") else entry.key


@dataclass(frozen=True)
class DrainReport:
    delivered: int = 0
    failed: int = 0
    pending: int = 0


class OutboxTicketing:
    """The ``Ticketing`` port, queueing work instead of failing while ``inner``'s
    system is unavailable."""

    def __init__(self, inner: Ticketing, store: Store, *,
                 clock: Callable[[], float] = time.time) -> None:
        self.inner = inner
        self._store = store
        self._clock = clock

    async def close(self) -> None:
        closer = getattr(self.inner, "close", None)
        if closer is not None:
            await closer()

    async def _queued(self, transfer_id: str) -> bool:
        return any(e.state == "pending" and lane(e) == "tickets"
                   for e in await self._store.work(transfer_id))

    async def _enqueue(self, transfer_id: str, key: str, op: str, payload: dict[str, Any],
                       reason: str) -> None:
        if await self._store.enqueue_work(transfer_id, key, op, payload, self._clock()):
            log.warning("ServiceNow work %s for %s queued: %s", key, transfer_id, reason)
            await self._store.append_audit(transfer_id, "work_queued",
                                           {"work": key, "reason": reason}, self._clock())

    async def create(self, transfer_id: str, facts: dict[str, Any]) -> Tickets:
        reason = "earlier ticket work is still queued"
        if not await self._queued(transfer_id):
            try:
                return await self.inner.create(transfer_id, facts)
            except EndpointUnavailable as exc:
                reason = str(exc)
        await self._enqueue(transfer_id, "create", "create", {"facts": facts}, reason)
        return Tickets(user=PENDING, audit=PENDING)

    async def update(self, transfer_id: str, tickets: Tickets | None, outcome: str,
                     notes: dict[str, Any]) -> None:
        reason = "earlier ticket work is still queued"
        if not await self._queued(transfer_id):
            try:
                await self.inner.update(transfer_id, tickets, outcome, notes)
                return
            except EndpointUnavailable as exc:
                reason = str(exc)
        await self._enqueue(transfer_id, f"update:{outcome}", "update",
                            {"outcome": outcome, "notes": notes}, reason)

    async def deliver(self, transfer_id: str, entry: OutboxEntry) -> None:
        """Do one piece of queued work now (raises what the inner port raises)."""
        if entry.op == "create":
            created = await self.inner.create(transfer_id, dict(entry.payload["facts"]))
            await self._store.update_transfer(transfer_id, tickets=created.model_dump())
            return
        record = await self._store.get_transfer(transfer_id)
        known = record.tickets if record is not None else {}
        tickets = (Tickets.model_validate(known)
                   if known and not {PENDING, NOT_CREATED} & set(known.values()) else None)
        await self.inner.update(transfer_id, tickets, str(entry.payload["outcome"]),
                                dict(entry.payload["notes"]))


async def _settle(store: Store, transfer_id: str, entry: OutboxEntry,
                  exc: FileFerryError) -> None:
    """Work refused for good: recorded, never retried."""
    await store.settle_work(transfer_id, entry.seq, state="failed", error=str(exc))
    if entry.op == "create":
        await store.update_transfer(transfer_id, tickets={"user": NOT_CREATED,
                                                          "audit": NOT_CREATED})
    await store.append_audit(transfer_id, "work_failed",
                             {"work": entry.key, "error": type(exc).__name__,
                              "cause": str(exc)}, time.time())


async def _drain_one(deliverers: Mapping[str, Deliverer], store: Store, transfer_id: str,
                     owner: str) -> DrainReport:
    if not await store.acquire_lease(f"outbox:{transfer_id}", owner, time.time(), LEASE_TTL):
        pending = sum(e.state == "pending" for e in await store.work(transfer_id))
        return DrainReport(pending=pending)  # another process is delivering it
    delivered = failed = pending = 0
    blocked: set[str] = set()
    try:
        for entry in [e for e in await store.work(transfer_id) if e.state == "pending"]:
            deliverer = deliverers.get(entry.op)
            if lane(entry) in blocked or deliverer is None:  # nothing configured: keep it
                pending += 1
                continue
            try:
                await deliverer.deliver(transfer_id, entry)
            except EndpointUnavailable as exc:
                await store.settle_work(transfer_id, entry.seq, state="pending", error=str(exc))
                blocked.add(lane(entry))
                pending += 1
                continue
            except FileFerryError as exc:
                await _settle(store, transfer_id, entry, exc)
                failed += 1
                continue
            await store.settle_work(transfer_id, entry.seq, state="done")
            await store.append_audit(transfer_id, "work_delivered",
                                     {"work": entry.key, "attempts": entry.attempts + 1},
                                     time.time())
            delivered += 1
        return DrainReport(delivered, failed, pending)
    finally:
        await store.release_lease(f"outbox:{transfer_id}", owner)


async def drain(deliverers: Mapping[str, Deliverer], store: Store,
                transfer_id: str | None = None) -> DrainReport:
    """Deliver the queued work of one transfer, or of every transfer that has some;
    ``deliverers`` maps each ``op`` to the port that does it. The run over every
    transfer first deletes settled work past its expiry (``Store.reap_settled_work``)."""
    owner = f"{socket.gethostname()}:{os.getpid()}:outbox"
    if transfer_id is None:  # the periodic drain also clears out expired settled work
        await store.reap_settled_work()
    ids = [transfer_id] if transfer_id else await store.transfers_with_pending_work()
    total = DrainReport()
    for tid in ids:
        one = await _drain_one(deliverers, store, tid, owner)
        total = DrainReport(total.delivered + one.delivered, total.failed + one.failed,
                            total.pending + one.pending)
    return total


async def flush(deliverers: Mapping[str, Deliverer], store: Store, transfer_id: str,
                seconds: float,
                *, interval: float = 1.0) -> DrainReport:
    """Drain ``transfer_id``'s work until none is pending or ``seconds`` passed."""
    deadline = time.monotonic() + seconds
    delivered = failed = 0
    pending = sum(e.state == "pending" for e in await store.work(transfer_id))
    while pending and (left := deadline - time.monotonic()) > 0:
        try:
            report = await asyncio.wait_for(drain(deliverers, store, transfer_id), left)
        except TimeoutError:
            break
        delivered, failed, pending = (delivered + report.delivered, failed + report.failed,
                                      report.pending)
        if pending:
            await asyncio.sleep(min(interval, max(0.0, deadline - time.monotonic())))
    pending = sum(e.state == "pending" for e in await store.work(transfer_id))
    return DrainReport(delivered, failed, pending)
