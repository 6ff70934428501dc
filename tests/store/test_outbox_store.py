"""The store's outbox and ``recorded``: the contract, run against every backend."""

from __future__ import annotations

import pytest

from fileferry.store import Store


async def test_work_is_queued_once_per_key_and_kept_in_order(store: Store) -> None:
    assert await store.enqueue_work("tr-1", "create", "create", {"facts": {"n": 1}}, 1.0)
    assert await store.enqueue_work("tr-1", "update:SUCCEEDED", "update",
                                    {"outcome": "SUCCEEDED"}, 2.0)
    assert not await store.enqueue_work("tr-1", "create", "create", {"facts": {"n": 2}}, 3.0)
    await store.enqueue_work("tr-2", "create", "create", {"facts": {}}, 4.0)

    work = await store.work("tr-1")
    assert [(e.seq, e.key, e.state, e.attempts) for e in work] == [
        (1, "create", "pending", 0), (2, "update:SUCCEEDED", "pending", 0)]
    assert work[0].payload == {"facts": {"n": 1}}, "a second enqueue changes nothing"
    assert await store.transfers_with_pending_work() == ["tr-1", "tr-2"]


async def test_settling_work_counts_attempts_and_leaves_the_pending_list(store: Store) -> None:
    await store.enqueue_work("tr-1", "create", "create", {}, 1.0)
    await store.settle_work("tr-1", 1, state="pending", error="503 from ServiceNow")
    [entry] = await store.work("tr-1")
    assert (entry.state, entry.attempts, entry.last_error) == ("pending", 1,
                                                               "503 from ServiceNow")
    await store.settle_work("tr-1", 1, state="done")
    [entry] = await store.work("tr-1")
    assert (entry.state, entry.attempts, entry.last_error) == ("done", 2, None)
    assert await store.transfers_with_pending_work() == []
    assert not await store.enqueue_work("tr-1", "create", "create", {}, 2.0), \
        "delivered work is never queued again"
    with pytest.raises(KeyError):
        await store.settle_work("tr-1", 9, state="done")


async def test_queued_work_refuses_secrets(store: Store) -> None:
    with pytest.raises(ValueError, match="refuses to keep secrets"):
        await store.enqueue_work("tr-1", "create", "create", {"password": "x"}, 1.0)


async def test_recorded_reads_what_record_once_kept(store: Store) -> None:
    assert await store.recorded("tickets", "tr-1") is None
    await store.record_once("tickets", "tr-1", {"user": "INC1"})
    await store.record_once("tickets", "tr-1", {"user": "INC2"})
    assert await store.recorded("tickets", "tr-1") == {"user": "INC1"}
