"""Per-file progress into the state store, batched so a busy transfer writes rarely.

The engine calls a subscriber synchronously from the event loop, once per
chunk, so ``StoreProgress`` only updates records in memory and marks them
dirty; a background task writes the dirty ones in one batch at most every
``interval`` seconds, and at once when a file finishes.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable
from types import TracebackType

from fileferry.models import FilePlan, FileResult
from fileferry.store.base import Store
from fileferry.store.models import FileRecord

__all__ = ["StoreProgress"]

log = logging.getLogger(__name__)


class StoreProgress:
    """A ``ProgressSubscriber`` keeping the ``files`` of one transfer up to date.

    ``clock`` and ``sleep`` are injected so tests pace it without waiting. Call
    ``await close()`` (or use ``async with``) when the transfer ends: it stops the
    background task and writes what is still pending. ``writes`` counts batches.
    """

    def __init__(self, store: Store, transfer_id: str, *, interval: float = 1.0,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self._store = store
        self._transfer_id = transfer_id
        self._interval = interval
        self._clock = clock
        self._sleep = sleep
        self._files: dict[str, FileRecord] = {}
        self._dirty: set[str] = set()
        self._last_flush = -math.inf
        self._wake = asyncio.Event()
        self._urgent = asyncio.Event()
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self.writes = 0

    async def __aenter__(self) -> StoreProgress:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.close()

    # --- ProgressSubscriber: synchronous, in memory only

    def file_started(self, plan: FilePlan) -> None:
        self._files[plan.source] = FileRecord(source=plan.source, destination=plan.destination,
                                              size=plan.size, status="RUNNING")
        self._touch(plan.source)

    def bytes_moved(self, plan: FilePlan, count: int) -> None:
        record = self._record(plan)
        record.bytes_confirmed += count
        self._touch(plan.source)

    def file_retrying(self, plan: FilePlan, attempt: int, error: str) -> None:
        record = self._record(plan)
        record.retries = attempt
        record.error = {"type": "Retrying", "message": error}  # cleared when the file finishes
        self._touch(plan.source)

    def file_resumed(self, plan: FilePlan, offset: int) -> None:
        record = self._record(plan)
        record.resume_offset = offset
        record.bytes_confirmed = offset
        self._touch(plan.source)

    def file_finished(self, result: FileResult) -> None:
        old = self._files.get(result.source)
        delivered = result.status == "DELIVERED"
        self._files[result.source] = FileRecord(
            source=result.source, destination=result.destination, size=result.size,
            bytes_confirmed=result.size if delivered or old is None else old.bytes_confirmed,
            status=result.status, sha256=result.sha256, md5=result.md5,
            verified_by=result.verified_by, resume_offset=old.resume_offset if old else 0,
            retries=old.retries if old else 0, error=result.error)
        self._touch(result.source, urgent=True)

    def _record(self, plan: FilePlan) -> FileRecord:
        if plan.source not in self._files:
            self._files[plan.source] = FileRecord(source=plan.source,
                                                  destination=plan.destination, size=plan.size,
                                                  status="RUNNING")
        return self._files[plan.source]

    def _touch(self, source: str, *, urgent: bool = False) -> None:
        self._dirty.add(source)
        if self._closed:
            return  # no background task any more: an explicit flush() writes it
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name=f"store-progress-{self._transfer_id}")
        self._wake.set()
        if urgent:
            self._urgent.set()

    # --- writing

    async def flush(self) -> None:
        """Write every pending change now, in one batch."""
        async with self._lock:
            if not self._dirty:
                return
            self._last_flush = self._clock()
            batch = [self._files[source].model_copy() for source in sorted(self._dirty)]
            self._dirty.clear()
            try:
                await self._store.upsert_files(self._transfer_id, batch)
            except BaseException:
                self._dirty.update(r.source for r in batch)  # newer values are in _files
                self._wake.set()
                raise
            self.writes += 1

    async def close(self) -> None:
        """Stop the background task and write what is pending."""
        self._closed = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        await self.flush()

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            delay = self._last_flush + self._interval - self._clock()
            if delay > 0 and not self._urgent.is_set():
                await self._pause(delay)
            self._wake.clear()
            self._urgent.clear()
            try:
                await self.flush()
            except Exception:
                log.warning("could not write progress of %s; trying again in %.1f s",
                            self._transfer_id, self._interval, exc_info=True)

    async def _pause(self, delay: float) -> None:
        """Sleep ``delay`` seconds, or less if a file finishes meanwhile."""
        waits = [asyncio.ensure_future(self._sleep(delay)),
                 asyncio.ensure_future(self._urgent.wait())]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiting in waits:
                waiting.cancel()
            await asyncio.gather(*waits, return_exceptions=True)
