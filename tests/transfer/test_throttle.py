"""The byte budget and the token bucket, with an injected clock (no sleeping)."""

from __future__ import annotations

import asyncio

from fileferry.transfer.throttle import ByteBudget, TokenBucket


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


async def test_bucket_paces_to_the_rate() -> None:
    clock = FakeClock()
    bucket = TokenBucket(1000, clock=clock, sleep=clock.sleep)
    for _ in range(10):
        await bucket.take(500)
    # 5000 bytes at 1000 B/s with a 1000-byte burst: 4 seconds of waiting.
    assert abs(clock.now - 4.0) < 1e-9
    assert all(s > 0 for s in clock.slept)


async def test_bucket_lets_a_chunk_larger_than_one_second_through() -> None:
    clock = FakeClock()
    bucket = TokenBucket(100, clock=clock, sleep=clock.sleep)
    await bucket.take(1000)
    await bucket.take(100)
    assert clock.now >= 10.0  # the big chunk's debt is paid before the next one


async def test_budget_blocks_until_released() -> None:
    budget = ByteBudget(100)
    await budget.acquire(60)
    waiter = asyncio.create_task(budget.acquire(60))
    await asyncio.sleep(0)
    assert not waiter.done() and budget.in_use == 60
    budget.release(60)
    await asyncio.wait_for(waiter, 1)
    assert budget.in_use == 60 and budget.peak == 60


async def test_budget_lets_an_oversized_request_through_alone() -> None:
    budget = ByteBudget(100)
    await budget.acquire(500)
    assert budget.in_use == 500
    budget.release(500)
    await budget.acquire(100)
    assert budget.peak == 500 and budget.in_use == 100


async def test_budget_cancelled_waiter_does_not_leak() -> None:
    budget = ByteBudget(100)
    await budget.acquire(100)
    waiter = asyncio.create_task(budget.acquire(50))
    await asyncio.sleep(0)
    waiter.cancel()
    budget.release(100)
    await asyncio.sleep(0)
    assert budget.in_use == 0
