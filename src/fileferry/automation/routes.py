"""Running a route: select what is new, claim it in the ledger, send it as one transfer.

One run, under a lease per route (``route:NAME``; a second run at the same
time returns ``BUSY`` and sends nothing):

1. *Recover*: claims left by an earlier run that crashed are settled first:
   an unfinished transfer is resumed (unless another live process holds it),
   a finished one is reconciled, a claim without a transfer is released.
2. *Select*: list the prefix; apply include/exclude and ``min_age``; drop the
   object versions the ledger has (same key and ETag; with
   ``resend_changed: false`` any version of the key).
3. *Claim* each (a conditional create: overlapping runs never both get one),
   name the files, store the batch, and run the workflow once for all of them.
4. *Reconcile*: files the transfer delivered are in the ledger even when
   another file failed (they are never sent twice); the rest are released so
   the next run tries them again.

With ``wait=False`` on Step Functions (the ``FileFerry-RunRoute`` Lambda) step 3
only starts the execution (``STARTED``) and step 4 happens in a later run's
recovery, once the execution has ended (``fileferry.aws.routes``).
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from fileferry.automation.batch import Batch, load_batch, name_files, save_batch
from fileferry.automation.delivery import mark_delivered
from fileferry.automation.objects import S3Object, SourceBucket, select
from fileferry.automation.settings import RouteSettings
from fileferry.config import Settings
from fileferry.errors import FileFerryError, UsageError
from fileferry.models import FileResult, new_transfer_id
from fileferry.store import FINAL_STATUSES, Store, open_store
from fileferry.store.ledger import Ledger, LedgerEntry
from fileferry.transfer.engine import TransferRequest
from fileferry.transfer.progress import ProgressSubscriber
from fileferry.transfer.retry import Sleep
from fileferry.workflow.runner import owner_id

__all__ = ["LEASE_TTL", "RouteRun", "route_settings", "run_route"]

LEASE_TTL = 30.0
RunStatus = Literal["SUCCEEDED", "FAILED", "REFUSED", "CANCELLED", "PENDING_APPROVAL",
                   "NOTHING_NEW", "BUSY", "STARTED"]
Clock = Callable[[], float]


class RouteRun(BaseModel):
    """The outcome of one run of a route (``fileferry run --json`` prints it)."""

    route: str
    status: RunStatus
    trigger: str = "manual"
    at: float
    transfer_id: str | None = None
    execution_arn: str | None = None
    """``STARTED`` on Step Functions: the execution sending the batch."""
    files: list[FileResult] = Field(default_factory=list)
    skipped: dict[str, int] = Field(default_factory=dict)
    """already_sent, excluded, too_new, deferred (over max_files), claimed_elsewhere."""
    ready_at: float | None = None
    """When an object skipped for min_age becomes old enough."""
    recovered: list[str] = Field(default_factory=list)
    trigger_file: str | None = None
    actions_failed: list[str] = Field(default_factory=list)
    error: dict[str, str] | None = None

    @property
    def exit_code(self) -> int:
        if self.status == "REFUSED":
            return 2
        failed = self.status in ("FAILED", "CANCELLED") or self.actions_failed
        return 1 if failed else 0

    def summary(self) -> dict[str, Any]:
        return {"status": self.status, "at": self.at, "trigger": self.trigger,
                "transfer_id": self.transfer_id, "files": len(self.files),
                "actions_failed": len(self.actions_failed),
                "error": self.error["type"] if self.error else None}


def route_settings(settings: Settings, name: str) -> RouteSettings:
    try:
        return settings.routes[name]
    except KeyError:
        known = ", ".join(sorted(settings.routes)) or "none configured"
        raise UsageError(f"unknown route {name!r} (known: {known}); add it under routes: "
                         "in the configuration") from None


async def _heartbeat(store: Store, lease: str, owner: str) -> None:
    while True:
        await asyncio.sleep(LEASE_TTL / 3)
        await store.renew_lease(lease, owner, time.time(), LEASE_TTL)


@contextlib.asynccontextmanager
async def _route_lease(store: Store, name: str) -> Any:
    """Yield True holding the route's lease, False when another run holds it."""
    lease, owner = f"route:{name}", f"{owner_id()}:{secrets.token_hex(4)}"
    if not await store.acquire_lease(lease, owner, time.time(), LEASE_TTL):
        yield False
        return
    beat = asyncio.create_task(_heartbeat(store, lease, owner))
    try:
        yield True
    finally:
        beat.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await beat
        await store.release_lease(lease, owner)


async def reconcile(store: Store, ledger: Ledger, route: str, transfer_id: str,
                    clock: Clock) -> None:
    """Settle the transfer's claims: delivered files recorded, the others released."""
    batch = await load_batch(store, transfer_id)
    if batch is not None:
        await mark_delivered(store, ledger, batch, transfer_id, clock())
    for entry in await ledger.entries(route):
        if entry.transfer_id == transfer_id and entry.state == "claimed":
            await ledger.release(route, entry.key, entry.etag, transfer_id)


async def _recover(settings: Settings, store: Store, ledger: Ledger, name: str,
                   clock: Clock, subscribers: Sequence[ProgressSubscriber],
                   sleep: Sleep | None) -> list[str]:
    from fileferry.services import resume_transfers

    stale = sorted({e.transfer_id for e in await ledger.entries(name) if e.state == "claimed"})
    recovered = []
    for tid in stale:
        record = await store.get_transfer(tid)
        if settings.workflow.engine == "stepfunctions":
            from fileferry.aws.routes import execution_ended

            if not await execution_ended(settings, store, name, tid, record):
                continue  # running on AWS (or started again): its objects stay claimed
        elif record is not None and record.status not in FINAL_STATUSES:
            held = record.execution_id and await store.lease_owner(record.execution_id,
                                                                    time.time())
            if held:
                continue  # still running elsewhere: its objects stay claimed
            await resume_transfers(settings, tid, subscribers, sleep)
        await reconcile(store, ledger, name, tid, clock)
        recovered.append(tid)
    return recovered


def _new(entries: list[LedgerEntry], objects: list[S3Object],
         resend_changed: bool) -> tuple[list[S3Object], int]:
    active = [e for e in entries if e.state != "released"]
    versions = {(e.key, e.etag) for e in active}
    keys = {e.key for e in active}
    fresh = [o for o in objects if (o.key, o.etag) not in versions
             and (resend_changed or o.key not in keys)]
    return fresh, len(objects) - len(fresh)


async def _claim(ledger: Ledger, name: str, route: RouteSettings, objects: list[S3Object],
                 tid: str, now: float) -> list[S3Object]:
    claimed = []
    for obj in objects:
        entry = LedgerEntry(route=name, bucket=route.source.bucket, key=obj.key,
                            etag=obj.etag, size=obj.size, state="claimed", transfer_id=tid,
                            claimed_at=now)
        if await ledger.claim(entry):
            claimed.append(obj)
    return claimed


async def _send(settings: Settings, store: Store, ledger: Ledger, name: str,
                route: RouteSettings, run: RouteRun, clock: Clock,
                subscribers: Sequence[ProgressSubscriber], sleep: Sleep | None,
                wait: bool = True) -> None:
    from fileferry.services import submit_transfer

    src = route.source
    now = clock()
    selection = select(route, await SourceBucket(settings.s3).list(src.bucket, src.prefix), now)
    fresh, already = _new(await ledger.entries(name), selection.eligible,
                          route.options.resend_changed)
    todo, deferred = fresh[:route.options.max_files], len(fresh[route.options.max_files:])
    tid = new_transfer_id()
    claimed = await _claim(ledger, name, route, todo, tid, now)
    run.skipped = {"already_sent": already, "excluded": selection.excluded,
                   "too_new": len(selection.too_new), "deferred": deferred,
                   "claimed_elsewhere": len(todo) - len(claimed)}
    run.ready_at = selection.ready_at(src.min_age)
    if not claimed:
        run.status = "NOTHING_NEW"
        return
    run.transfer_id = tid
    on_conflict = settings.destinations[route.destination_name].on_conflict
    try:
        first = await ledger.reserve_seq(name, len(claimed))
        files = name_files(name, route, claimed, tid, first,
                           datetime.fromtimestamp(now, route.timezone), on_conflict)
    except FileFerryError:
        for obj in claimed:
            await ledger.release(name, obj.key, obj.etag, tid)
        raise
    await save_batch(store, tid, Batch(route=name, bucket=src.bucket, prefix=src.prefix,
                                       run_at=now, files=files))
    request = TransferRequest(sources=[f"s3://{src.bucket}/{src.prefix}"],
                              destination=route.destination, transfer_id=tid,
                              requester=route.options.run_as or f"route:{name}")
    if not wait and settings.workflow.engine == "stepfunctions":
        from fileferry.aws.routes import start_batch

        run.execution_arn = await start_batch(settings, store, request, name)
        run.status = "STARTED"
        return
    result = await submit_transfer(settings, request, subscribers, sleep,
                                   options={"route": name})
    await reconcile(store, ledger, name, tid, clock)
    run.status, run.files, run.error = result.status, result.files, result.error
    await _collect_post_delivery(store, ledger, name, tid, run)


async def _collect_post_delivery(store: Store, ledger: Ledger, name: str, tid: str,
                                 run: RouteRun) -> None:
    written = await store.recorded("trigger_file", tid)
    run.trigger_file = str(written["path"]) if written else None
    for entry in await ledger.entries(name):
        if entry.transfer_id == tid:
            run.actions_failed += [f"{entry.key}: {action}: {outcome}"
                                   for action, outcome in entry.actions.items()
                                   if outcome.startswith("failed")]


async def run_route(settings: Settings, name: str, *, trigger: str = "manual",
                    clock: Clock = time.time, subscribers: Sequence[ProgressSubscriber] = (),
                    sleep: Sleep | None = None, wait: bool = True) -> RouteRun:
    """Run a route now; never raises ``FileFerryError`` (it is in the result).

    ``wait=False`` on Step Functions returns once the execution is started
    (``STARTED``); with the embedded runner the run always waits."""
    route = route_settings(settings, name)
    run = RouteRun(route=name, status="NOTHING_NEW", trigger=trigger, at=clock())
    store = open_store(settings.store.url)
    ledger = Ledger(store)
    try:
        async with _route_lease(store, name) as held:
            if not held:
                run.status = "BUSY"
                return run
            try:
                run.recovered = await _recover(settings, store, ledger, name, clock,
                                               subscribers, sleep)
                await _send(settings, store, ledger, name, route, run, clock, subscribers,
                            sleep, wait)
            except FileFerryError as exc:
                run.status = "REFUSED" if exc.exit_code == 2 else "FAILED"
                run.error = exc.to_dict()
            await ledger.record_run(name, run.summary())
            return run
    finally:
        await store.close()
