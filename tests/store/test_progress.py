"""StoreProgress: many progress events, few batched writes, the right final state."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from fileferry.models import FilePlan, FileResult
from fileferry.store import Store, StoreProgress
from tests.store.conftest import MakeStore
from tests.store.wrappers import CountingBackend


class FakeClock:
    """Time moves only when the test calls ``advance``; ``sleep`` waits for it."""

    def __init__(self) -> None:
        self.now = 0.0
        self._sleepers: list[tuple[float, asyncio.Future[None]]] = []

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
        for until, waiter in list(self._sleepers):
            if until <= self.now:
                self._sleepers.remove((until, waiter))
                if not waiter.done():
                    waiter.set_result(None)

    async def sleep(self, seconds: float) -> None:
        waiter = asyncio.get_running_loop().create_future()
        entry = (self.now + seconds, waiter)
        self._sleepers.append(entry)
        try:
            await waiter
        finally:
            if entry in self._sleepers:
                self._sleepers.remove(entry)


def plan(name: str, size: int = 1000) -> FilePlan:
    return FilePlan(source=f"s3://b/{name}", bucket="b", key=name, size=size,
                    destination=f"/in/{name}")


def delivered(p: FilePlan) -> FileResult:
    return FileResult(source=p.source, destination=p.destination, size=p.size, sha256="ab",
                      md5="cd", verified_by="server-md5", status="DELIVERED")


async def eventually(check: Callable[[], bool]) -> None:
    for _ in range(2000):  # 10 s at most
        if check():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("timed out")


async def until_writes(progress: StoreProgress, count: int) -> None:
    await eventually(lambda: progress.writes >= count)
    assert progress.writes == count


def counting(store: Store) -> CountingBackend:
    assert isinstance(store.backend, CountingBackend)
    return store.backend


async def test_many_events_few_writes(make_store: MakeStore) -> None:
    store = make_store(counted=True)
    clock = FakeClock()
    progress = StoreProgress(store, "tr-1", interval=1.0, clock=clock, sleep=clock.sleep)
    files = [plan("a", 100_000), plan("b", 100_000)]
    for p in files:
        progress.file_started(p)
    await eventually(lambda: progress.writes == 1)  # the first batch goes at once
    for step in range(1, 41):  # 10 s of engine time: 2000 events, 50 every 0.25 s
        for _ in range(25):
            for p in files:
                progress.bytes_moved(p, 100)
        clock.advance(0.25)
        if step % 4 == 0:  # a whole second has passed: exactly one more batch
            await until_writes(progress, 1 + step // 4)
        else:
            await asyncio.sleep(0.002)
            assert progress.writes == 1 + step // 4
    await progress.flush()  # the last batch already had everything
    assert progress.writes == counting(store).writes("files") == 11
    assert [f.bytes_confirmed for f in await store.get_files("tr-1")] == [100_000, 100_000]
    writes = progress.writes

    progress.file_finished(delivered(files[0]))  # written at once, not after the interval
    await eventually(lambda: progress.writes == writes + 1)
    first = (await store.get_files("tr-1"))[0]
    assert (first.status, first.sha256, first.md5, first.verified_by) == (
        "DELIVERED", "ab", "cd", "server-md5")
    await progress.close()
    assert counting(store).writes("files") == writes + 1  # nothing left to write


async def test_interval_bounds_writes_in_real_time(make_store: MakeStore) -> None:
    store = make_store(counted=True)
    progress = StoreProgress(store, "tr-1", interval=0.05)
    p = plan("a", 10**6)
    progress.file_started(p)
    started = time.monotonic()
    while time.monotonic() - started < 0.3:
        progress.bytes_moved(p, 1)
        await asyncio.sleep(0.001)
    await progress.close()
    # 0.3 s at one batch per 0.05 s: 7 at most (the first is immediate), plus close's
    assert 2 <= progress.writes <= 8, progress.writes
    assert (await store.get_files("tr-1"))[0].bytes_confirmed > 50


async def test_finished_file_is_written_without_waiting(store: Store) -> None:
    clock = FakeClock()  # never advances: only file_finished can force a write
    progress = StoreProgress(store, "tr-1", interval=3600.0, clock=clock, sleep=clock.sleep)
    p = plan("a")
    progress.file_started(p)
    await eventually(lambda: progress.writes == 1)  # the first batch goes at once
    progress.bytes_moved(p, 400)
    await asyncio.sleep(0.05)
    assert progress.writes == 1
    assert (await store.get_files("tr-1"))[0].bytes_confirmed == 0
    progress.bytes_moved(p, 600)
    progress.file_finished(delivered(p))
    await eventually(lambda: progress.writes == 2)
    [record] = await store.get_files("tr-1")
    assert (record.status, record.bytes_confirmed, record.error) == ("DELIVERED", 1000, None)
    await progress.close()


async def test_close_writes_what_is_pending(store: Store) -> None:
    clock = FakeClock()
    async with StoreProgress(store, "tr-1", interval=3600.0, clock=clock,
                             sleep=clock.sleep) as progress:
        p = plan("a")
        progress.file_started(p)
        for _ in range(10):
            progress.bytes_moved(p, 7)
    [record] = await store.get_files("tr-1")
    assert (record.status, record.bytes_confirmed) == ("RUNNING", 70)


async def test_retries_resumes_and_failures(store: Store) -> None:
    async with StoreProgress(store, "tr-1") as progress:
        ok, bad, never = plan("ok"), plan("bad"), plan("never")
        progress.file_started(ok)
        progress.bytes_moved(ok, 600)
        progress.file_retrying(ok, 1, "connection reset")
        await progress.flush()
        [record] = await store.get_files("tr-1")
        assert (record.retries, record.error) == (1, {"type": "Retrying",
                                                      "message": "connection reset"})
        progress.file_resumed(ok, 512)
        await progress.flush()
        [record] = await store.get_files("tr-1")
        assert (record.resume_offset, record.bytes_confirmed) == (512, 512)
        progress.bytes_moved(ok, 488)
        progress.file_finished(delivered(ok))

        progress.file_started(bad)
        progress.bytes_moved(bad, 300)
        progress.file_finished(FileResult(source=bad.source, destination=bad.destination,
                                          size=bad.size, status="FAILED",
                                          error={"type": "EndpointUnavailable", "message": "x"}))
        # failed before it started (the engine reports these without file_started)
        progress.file_finished(FileResult(source=never.source, destination=never.destination,
                                          size=never.size, status="FAILED",
                                          error={"type": "TransferFailed", "message": "y"}))
    files = {f.source.rsplit("/", 1)[1]: f for f in await store.get_files("tr-1")}
    assert (files["ok"].status, files["ok"].bytes_confirmed, files["ok"].retries,
            files["ok"].resume_offset, files["ok"].error) == ("DELIVERED", 1000, 1, 512, None)
    assert (files["bad"].status, files["bad"].bytes_confirmed) == ("FAILED", 300)
    assert files["bad"].error == {"type": "EndpointUnavailable", "message": "x"}
    assert files["never"].status == "FAILED"
