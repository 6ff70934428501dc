"""Small asyncio helpers: a timeout on the injected sleep, and a bounded worker pool.

Both cancel what they started before returning or raising, including when
the caller itself is cancelled.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any, TypeVar

__all__ = ["cancel_all", "run_limited", "with_timeout"]

T = TypeVar("T")


async def cancel_all(tasks: Sequence[asyncio.Future[Any]]) -> None:
    """Cancel ``tasks`` that are still running and wait until they have stopped.

    Their results and exceptions are discarded.
    """
    running = [task for task in tasks if not task.done()]
    for task in running:
        task.cancel()
    if running:
        await asyncio.wait(running)
    for task in tasks:
        if not task.cancelled():
            task.exception()  # mark as retrieved: asyncio would log it otherwise


async def with_timeout(work: Coroutine[Any, Any, T], seconds: float | None,
                       sleep: Callable[[float], Awaitable[None]],
                       on_timeout: Callable[[], BaseException]) -> T:
    """Await ``work``; when ``sleep(seconds)`` returns first, cancel it and raise ``on_timeout()``.

    ``seconds`` None means no limit. When both finish in the same step, the
    work's outcome wins.
    """
    if seconds is None:
        return await work
    task = asyncio.ensure_future(work)

    async def timer() -> None:
        await sleep(seconds)

    clock = asyncio.ensure_future(timer())
    try:
        await asyncio.wait({task, clock}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        await cancel_all([clock] if task.done() else [task, clock])
    if task.cancelled():
        raise on_timeout()
    return task.result()


async def run_limited(jobs: Sequence[Callable[[], Awaitable[T]]], limit: int) -> list[T]:
    """Run ``jobs`` with at most ``limit`` at once, starting them in order.

    Results keep the jobs' order. The first job to raise stops the rest: no
    new job starts, running ones are cancelled, and its exception is raised.
    """
    results: list[Any] = [None] * len(jobs)
    queue = iter(range(len(jobs)))

    async def worker() -> None:
        for index in queue:
            results[index] = await jobs[index]()

    workers = [asyncio.ensure_future(worker()) for _ in range(min(max(limit, 1), len(jobs)))]
    try:
        pending: set[asyncio.Future[None]] = set(workers)
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_EXCEPTION)
            failed = [w for w in workers if w in done and w.exception() is not None]
            error = failed[0].exception() if failed else None
            if error is not None:
                raise error
    finally:
        await cancel_all(workers)
    return results
