"""The server's worker pool: ``api.workers`` asyncio tasks running recorded transfers
through the embedded runner (``services.run_recorded``), one at a time each.

``POST /api/transfers`` records the transfer and queues its id, so it answers
202 at once. Stopping the pool cancels running executions: each one's lease is
released and its checkpoint kept, so the next start resumes it.
"""

from __future__ import annotations

import asyncio
import logging
import time

from fileferry.api.events import BusProgress, EventBus
from fileferry.api.metrics import ApiMetrics
from fileferry.api.schemas import TransferEvent
from fileferry.config import Settings
from fileferry.errors import FileFerryError
from fileferry.services import run_recorded, transfer_public
from fileferry.store import FINAL_STATUSES, Store

__all__ = ["WorkerPool"]

log = logging.getLogger(__name__)


class WorkerPool:
    def __init__(self, settings: Settings, store: Store, bus: EventBus, metrics: ApiMetrics,
                 size: int) -> None:
        self._settings, self._store, self._bus, self._metrics = settings, store, bus, metrics
        self._size = size
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self.active: set[str] = set()
        """Ids queued or running here (the store poller leaves them to us)."""

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._work(), name=f"fileferry-worker-{i}")
                       for i in range(self._size)]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    def submit(self, transfer_id: str) -> bool:
        """Queue a recorded transfer; False when it is queued or running here already."""
        if transfer_id in self.active:
            return False
        self.active.add(transfer_id)
        self._queue.put_nowait(transfer_id)
        self._metrics.queued.set(self._queue.qsize())
        return True

    async def _work(self) -> None:
        while True:
            tid = await self._queue.get()
            self._metrics.queued.set(self._queue.qsize())
            self._metrics.running.inc()
            try:
                await self._run(tid)
            except FileFerryError as exc:  # e.g. LeaseHeld: another process runs it
                log.warning("transfer %s not run here: %s: %s", tid, exc.name, exc)
            except Exception:  # one transfer's bug must not stop the worker
                log.exception("transfer %s ended with an unexpected error", tid)
            finally:
                self._metrics.running.dec()
                self.active.discard(tid)
                self._queue.task_done()

    async def _run(self, tid: str) -> None:
        started = time.monotonic()
        progress = BusProgress(self._bus, self._settings, self._store, tid, self._metrics)
        await self._announce(tid)
        try:
            result = await run_recorded(self._settings, tid, [progress])
        finally:
            await progress.close()
        self._metrics.transfers.labels(result.status).inc()
        if result.error is not None and result.status in ("FAILED", "REFUSED"):
            self._metrics.failures.labels(result.error.get("type", "unknown")).inc()
        self._metrics.transfer_seconds.observe(time.monotonic() - started)
        await self._announce(tid)

    async def _announce(self, tid: str) -> None:
        view = await transfer_public(self._settings, self._store, tid, detail=False)
        if view is not None:
            self._bus.publish(TransferEvent(type="status", transfer=view,
                                            final=view.status in FINAL_STATUSES))
