"""Wrappers that bound the byte stream: a global memory budget and a bandwidth limit."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from fileferry.endpoints.base import Writer

__all__ = ["ByteBudget", "ThrottledWriter", "TokenBucket"]


class ByteBudget:
    """Bytes held in memory across every file in flight, at most ``limit``.

    A request larger than the whole budget is let through alone, so one huge
    chunk cannot deadlock the transfer. ``release`` is synchronous so that it
    can run in ``finally`` blocks of cancelled tasks.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.in_use = 0
        self.peak = 0
        self._waiters: list[asyncio.Future[None]] = []

    async def acquire(self, n: int) -> None:
        while self.in_use and self.in_use + n > self.limit:
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            finally:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
        self.in_use += n
        self.peak = max(self.peak, self.in_use)

    def release(self, n: int) -> None:
        self.in_use -= n
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)


class TokenBucket:
    """``rate`` bytes per second with bursts of up to one second's worth."""

    def __init__(self, rate: int, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self.rate = rate
        self._clock = clock
        self._sleep = sleep
        self._tokens = float(rate)
        self._last = clock()
        self._lock = asyncio.Lock()

    async def take(self, n: int) -> None:
        async with self._lock:
            while True:
                now = self._clock()
                self._tokens = min(float(self.rate), self._tokens + (now - self._last)
                                   * self.rate)
                self._last = now
                if self._tokens >= min(n, self.rate):
                    self._tokens -= n
                    return
                await self._sleep((min(n, self.rate) - self._tokens) / self.rate)


class ThrottledWriter:
    """A ``Writer`` that waits for the bucket before each write."""

    def __init__(self, inner: Writer, bucket: TokenBucket) -> None:
        self._inner = inner
        self._bucket = bucket

    @property
    def acknowledged(self) -> int:
        return self._inner.acknowledged

    async def write(self, data: bytes) -> None:
        await self._bucket.take(len(data))
        await self._inner.write(data)

    async def commit(self) -> None:
        await self._inner.commit()

    async def abort(self) -> None:
        await self._inner.abort()
