"""Live events for the dashboard and any SSE client.

Two feeds go into one in-process :class:`EventBus`:

* :class:`BusProgress`, a ``ProgressSubscriber`` on each transfer this server
  runs: moving bytes become ``progress`` events (at most every
  ``interval`` seconds per transfer), finished files ``file`` events;
* :class:`StorePoller`, for transfers other processes run (``fileferry
  transfer`` on the CLI): it polls the store for unfinished transfers and
  publishes what changed, including the final status.

Subscribers get bounded queues; a subscriber too slow to keep up loses its
oldest events rather than slowing a transfer down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field

from fileferry.api.metrics import ApiMetrics
from fileferry.api.schemas import FilePublic, TransferEvent, TransferPublic
from fileferry.config import Settings
from fileferry.models import FilePlan, FileResult
from fileferry.services import transfer_public
from fileferry.store import FINAL_STATUSES, Store

__all__ = ["BusProgress", "EventBus", "StorePoller", "Subscription", "event_stream", "sse"]

log = logging.getLogger(__name__)
QUEUE_SIZE = 1000


@dataclass(eq=False)
class Subscription:
    """One listener: events for ``transfer_id`` (None: every transfer)."""

    transfer_id: str | None
    queue: asyncio.Queue[TransferEvent | None] = field(
        default_factory=lambda: asyncio.Queue(QUEUE_SIZE))

    def offer(self, event: TransferEvent | None) -> None:
        if self.queue.full():
            self.queue.get_nowait()  # drop the oldest: a slow reader never blocks a transfer
        self.queue.put_nowait(event)


class EventBus:
    """Fan-out of :class:`TransferEvent` to subscriptions (same event loop only)."""

    def __init__(self) -> None:
        self._subs: set[Subscription] = set()
        self.closed = False

    def publish(self, event: TransferEvent) -> None:
        for sub in list(self._subs):
            if sub.transfer_id in (None, event.transfer.transfer_id):
                sub.offer(event)

    @contextlib.contextmanager
    def subscribe(self, transfer_id: str | None = None) -> Iterator[Subscription]:
        sub = Subscription(transfer_id)
        self._subs.add(sub)
        try:
            yield sub
        finally:
            self._subs.discard(sub)

    def close(self) -> None:
        """End every stream (a None tells the reader to stop)."""
        self.closed = True
        for sub in list(self._subs):
            sub.offer(None)


class BusProgress:
    """A ``ProgressSubscriber`` for one transfer the server runs. The engine calls it
    synchronously per chunk, so it only updates counters and wakes a task that
    reads the totals from the store and publishes a snapshot at most every
    ``interval`` seconds (a file's end at once)."""

    def __init__(self, bus: EventBus, settings: Settings, store: Store, transfer_id: str,
                 metrics: ApiMetrics, interval: float = 0.25,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._bus, self._settings, self._store = bus, settings, store
        self._tid, self._metrics = transfer_id, metrics
        self._interval, self._clock = interval, clock
        self._confirmed: dict[str, int] = {}
        self._finished: list[FileResult] = []
        self._delivered: set[str] = set()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._started: dict[str, float] = {}

    def file_started(self, plan: FilePlan) -> None:
        self._started[plan.source] = self._clock()
        self._confirmed.setdefault(plan.source, 0)
        self._touch()

    def bytes_moved(self, plan: FilePlan, count: int) -> None:
        self._confirmed[plan.source] = self._confirmed.get(plan.source, 0) + count
        self._metrics.bytes.inc(count)
        self._touch()

    def file_retrying(self, plan: FilePlan, attempt: int, error: str) -> None:
        self._metrics.retries.inc()

    def file_resumed(self, plan: FilePlan, offset: int) -> None:
        self._confirmed[plan.source] = offset
        self._touch()

    def file_finished(self, result: FileResult) -> None:
        self._metrics.files.labels(result.status).inc()
        started = self._started.pop(result.source, None)
        if started is not None:
            self._metrics.file_seconds.observe(self._clock() - started)
        if result.status == "DELIVERED":
            self._confirmed[result.source] = result.size
        self._finished.append(result)
        self._touch()

    def _touch(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._pump(), name=f"bus-progress-{self._tid}")
        self._wake.set()

    async def _pump(self) -> None:
        last = -float("inf")
        while True:
            await self._wake.wait()
            delay = last + self._interval - self._clock()
            if delay > 0 and not self._finished:
                await asyncio.sleep(delay)
            self._wake.clear()
            last = self._clock()
            try:
                await self._publish()
            except Exception:  # a live view must never break a transfer
                log.warning("could not publish progress of %s", self._tid, exc_info=True)

    async def _publish(self) -> None:
        view = await transfer_public(self._settings, self._store, self._tid, detail=False)
        if view is None:
            return
        # The store lags (it is written in batches): take the freshest per-file counts.
        stored = {f.source: f for f in await self._store.get_files(self._tid)}
        done = {s: f.bytes_confirmed for s, f in stored.items()}
        done.update(self._confirmed)
        view.bytes_done = min(sum(done.values()), view.bytes_total or sum(done.values()))
        finished, self._finished = self._finished, []
        self._delivered.update(r.source for r in finished if r.status == "DELIVERED")
        view.files_done = len(self._delivered | {
            s for s, f in stored.items() if f.status == "DELIVERED"})
        for result in finished:
            self._bus.publish(TransferEvent(type="file", transfer=view, file=FilePublic(
                **result.model_dump(), bytes_confirmed=done.get(result.source, 0))))
        self._bus.publish(TransferEvent(type="progress", transfer=view))

    async def close(self) -> None:
        """Stop the publishing task and publish what it had not yet (the worker
        publishes the final status itself)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            try:
                await self._publish()
            except Exception:
                log.warning("could not publish progress of %s", self._tid, exc_info=True)


class StorePoller:
    """Publishes changes of transfers that other processes run, read from the store
    every ``interval`` seconds. ``local`` names the ids this server runs itself
    (their events come from :class:`BusProgress` and the worker)."""

    def __init__(self, bus: EventBus, settings: Settings, store: Store,
                 local: Callable[[], set[str]], interval: float = 1.0) -> None:
        self._bus, self._settings, self._store = bus, settings, store
        self._local, self._interval = local, interval
        self._seen: dict[str, tuple[str, int, int]] = {}

    async def run(self) -> None:
        while True:
            try:
                await self.poll()
            except Exception:
                log.warning("could not poll the store for transfers", exc_info=True)
            await asyncio.sleep(self._interval)

    async def _unfinished(self) -> list[str]:
        ids: list[str] = []
        for status in ("PENDING", "RUNNING"):
            cursor: str | None = None
            while True:
                page, cursor = await self._store.list_transfers(status=status, limit=200,
                                                                cursor=cursor)
                ids += [r.transfer_id for r in page]
                if cursor is None:
                    break
        return ids

    async def poll(self) -> None:
        """One round: unfinished transfers, plus those that were unfinished last time."""
        local = self._local()
        watch = [t for t in dict.fromkeys([*await self._unfinished(), *self._seen])
                 if t not in local]
        for tid in watch:
            view = await transfer_public(self._settings, self._store, tid, detail=False)
            if view is None:
                self._seen.pop(tid, None)
                continue
            self._publish_change(view)

    def _publish_change(self, view: TransferPublic) -> None:
        key = (view.status, view.bytes_done, view.files_done)
        previous = self._seen.get(view.transfer_id)
        final = view.status in FINAL_STATUSES
        if final:
            self._seen.pop(view.transfer_id, None)
        else:
            self._seen[view.transfer_id] = key
        if previous == key:
            return
        kind = "status" if previous is None or previous[0] != view.status else "progress"
        self._bus.publish(TransferEvent(type=kind, transfer=view, final=final))


HEARTBEAT = 15.0


def sse(event: TransferEvent) -> str:
    """One Server-Sent Event: its name is the event's type, its data the JSON object."""
    return f"event: {event.type}\ndata: {event.model_dump_json()}\n\n"


async def event_stream(bus: EventBus, transfer_id: str | None,
                       snapshot: Callable[[], Awaitable[list[TransferEvent]]],
                       heartbeat: float = HEARTBEAT,
                       allow: Callable[[TransferEvent], Awaitable[bool]] | None = None
                       ) -> AsyncIterator[str]:
    """Subscribe first, then send the snapshot, then live events. A stream for one
    transfer ends after its final status; every stream ends when the server stops.
    A comment line every ``heartbeat`` seconds keeps proxies from closing it.
    ``allow`` (None: everything) says which live events this reader may see; the
    others are dropped here, so the bus stays one fan-out for every reader."""
    with bus.subscribe(transfer_id) as sub:
        for event in await snapshot():
            yield sse(event)
            if transfer_id is not None and event.final:
                return
        while not bus.closed:
            try:
                live = await asyncio.wait_for(sub.queue.get(), heartbeat)
            except TimeoutError:
                yield ": keep-alive\n\n"
                continue
            if live is None:
                return
            if allow is not None and not await allow(live):
                continue
            yield sse(live)
            if transfer_id is not None and live.final:
                return
