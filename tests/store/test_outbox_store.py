"""The store's outbox and ``recorded``: the contract, run against every backend."""

from __future__ import annotations

import pytest

from fileferry.store import SqliteBackend, Store
from fileferry.store.base import OUTBOX_RETENTION
from tests.store.conftest import MakeStore


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


async def test_settled_work_expires_and_pending_work_never_does(make_store: MakeStore) -> None:
    now = [1_000_000.0]
    store = make_store(clock=lambda: now[0])
    await store.enqueue_work("tr-1", "create", "create", {}, 1.0)
    await store.enqueue_work("tr-1", "update:FAILED", "update", {}, 2.0)
    await store.enqueue_work("tr-2", "create", "create", {}, 3.0)
    await store.settle_work("tr-1", 1, state="done")
    await store.settle_work("tr-1", 2, state="failed", error="refused for good")
    await store.settle_work("tr-2", 1, state="pending", error="503")
    done, failed = await store.work("tr-1")
    assert done.expires_at == failed.expires_at == 1_000_000 + OUTBOX_RETENTION
    [waiting] = await store.work("tr-2")
    assert waiting.expires_at is None
    assert await store.transfers_with_pending_work() == ["tr-2"]

    now[0] += OUTBOX_RETENTION + 1  # a month later
    reaped = await store.reap_settled_work()
    if isinstance(store.backend, SqliteBackend):
        assert reaped == 2 and await store.work("tr-1") == []
    else:  # DynamoDB's TTL on expires_at reaps them (create_schema enabled it)
        assert reaped == 0
    assert [e.state for e in await store.work("tr-2")] == ["pending"]
    assert await store.transfers_with_pending_work() == ["tr-2"]


async def test_the_drain_reads_markers_not_every_settled_entry(make_store: MakeStore) -> None:
    store = make_store(counted=True)
    for n in range(5):
        await store.enqueue_work(f"tr-{n}", "create", "create", {}, 1.0)
        await store.settle_work(f"tr-{n}", 1, state="done")
    await store.enqueue_work("tr-9", "create", "create", {}, 1.0)
    calls = store.backend.calls  # type: ignore[attr-defined]
    calls.clear()
    assert await store.transfers_with_pending_work() == ["tr-9"]
    assert calls[("scan", "outbox")] == 0 and calls[("query", "outbox")] == 1
    # a settle racing a new enqueue keeps the transfer listed
    await store.settle_work("tr-9", 1, state="done")
    assert await store.transfers_with_pending_work() == []
    await store.enqueue_work("tr-9", "update:SUCCEEDED", "update", {}, 2.0)
    assert await store.transfers_with_pending_work() == ["tr-9"]
