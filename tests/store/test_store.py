"""The Store's contract, written once and run against every backend."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from fileferry.store import (
    FileRecord,
    Store,
    TransferNotFound,
    TransferRecord,
    refuse_secrets,
)
from tests.store.conftest import MakeStore
from tests.store.wrappers import CountingBackend


def transfer(transfer_id: str = "tr-1", **fields: Any) -> TransferRecord:
    values: dict[str, Any] = {"requester": "alice", "sources": ["s3://b/k"],
                              "destination": "acme:in/", "created_at": 1.0, "updated_at": 1.0}
    values.update(fields)
    return TransferRecord(transfer_id=transfer_id, **values)


# --- transfers


async def test_create_and_get(store: Store) -> None:
    stored = await store.create_transfer(transfer(options={"verify": "auto"}, bytes_total=9))
    assert stored.version == 1
    assert await store.get_transfer("tr-1") == stored
    assert stored.options == {"verify": "auto"} and stored.status == "PENDING"
    assert await store.get_transfer("tr-missing") is None


async def test_create_is_idempotent_by_id(make_store: MakeStore) -> None:
    first, second = make_store(), make_store()
    created = await first.create_transfer(transfer(requester="alice"))
    again = await second.create_transfer(transfer(requester="mallory", status="RUNNING"))
    assert again == created
    assert again.requester == "alice" and again.version == 1
    items, _ = await first.list_transfers()
    assert [t.transfer_id for t in items] == ["tr-1"]


async def test_concurrent_creates_make_one_record(make_store: MakeStore) -> None:
    stores = [make_store(), make_store()]
    results = await asyncio.gather(*(stores[i % 2].create_transfer(transfer(requester=f"u{i}"))
                                     for i in range(10)))
    assert len({r.requester for r in results}) == 1
    assert all(r.version == 1 for r in results)


async def test_update_sets_fields_and_time(make_store: MakeStore) -> None:
    store = make_store(clock=lambda: 42.0)
    await store.create_transfer(transfer())
    updated = await store.update_transfer("tr-1", status="RUNNING", bytes_done=5,
                                          tickets={"change": "CHG0001"})
    assert (updated.status, updated.bytes_done, updated.version) == ("RUNNING", 5, 2)
    assert updated.tickets == {"change": "CHG0001"} and updated.updated_at == 42.0
    assert await store.get_transfer("tr-1") == updated
    explicit = await store.update_transfer("tr-1", updated_at=7.0)
    assert explicit.updated_at == 7.0


async def test_update_refuses_bad_changes(store: Store) -> None:
    await store.create_transfer(transfer())
    with pytest.raises(TransferNotFound):
        await store.update_transfer("tr-missing", status="RUNNING")
    for bad in ({"nonsense": 1}, {"version": 9}, {"transfer_id": "tr-2"}):
        with pytest.raises(ValueError):
            await store.update_transfer("tr-1", **bad)
    with pytest.raises(ValueError):  # pydantic's ValidationError is a ValueError
        await store.update_transfer("tr-1", status="DONE-ISH")
    assert (await store.get_transfer("tr-1")) == transfer(version=1)


async def test_update_conflict_is_retried_on_the_new_version(make_store: MakeStore) -> None:
    racer = make_store()
    store = make_store(counted=True)
    backend = store.backend
    assert isinstance(backend, CountingBackend)
    await store.create_transfer(transfer())

    async def race() -> None:  # lands between our read and our conditional write
        await racer.update_transfer("tr-1", bytes_done=123)

    backend.before_conditional_put.append(race)
    updated = await store.update_transfer("tr-1", status="RUNNING")
    assert (updated.status, updated.bytes_done, updated.version) == ("RUNNING", 123, 3)
    assert backend.calls["put", "transfers"] == 3  # create, the lost put, the retry


async def test_concurrent_updates_lose_nothing(make_store: MakeStore) -> None:
    stores = [make_store(), make_store()]
    await stores[0].create_transfer(transfer())
    await asyncio.gather(*(stores[i % 2].update_transfer("tr-1", tickets={"n": str(i)})
                           for i in range(16)))
    final = await stores[0].get_transfer("tr-1")
    assert final is not None and final.version == 17


async def test_list_filters_and_pages(store: Store) -> None:
    for i in range(11):
        await store.create_transfer(transfer(
            f"tr-{i:02d}", status="FAILED" if i % 3 == 0 else "SUCCEEDED",
            requester="alice" if i % 2 else "bob", destination=f"d{i % 2}:"))
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        items, cursor = await store.list_transfers(limit=4, cursor=cursor)
        seen += [t.transfer_id for t in items]
        pages += 1
        if cursor is None:
            break
    assert seen == [f"tr-{i:02d}" for i in range(11)] and pages == 3

    failed, nxt = await store.list_transfers(status="FAILED")
    assert [t.transfer_id for t in failed] == ["tr-00", "tr-03", "tr-06", "tr-09"]
    assert nxt is None
    both, _ = await store.list_transfers(status="SUCCEEDED", requester="alice")
    assert [t.transfer_id for t in both] == ["tr-01", "tr-05", "tr-07"]
    page1, cur = await store.list_transfers(destination="d0:", limit=2)
    page2, cur2 = await store.list_transfers(destination="d0:", limit=2, cursor=cur)
    assert [t.transfer_id for t in page1 + page2] == ["tr-00", "tr-02", "tr-04", "tr-06"]
    assert cur2 is not None
    assert (await store.list_transfers(requester="nobody")) == ([], None)
    exact, last = await store.list_transfers(status="FAILED", limit=4)
    assert len(exact) == 4 and last is None  # a full last page says there is no more


async def test_list_refuses_bad_arguments(store: Store) -> None:
    with pytest.raises(ValueError, match="cursor"):
        await store.list_transfers(cursor="not a cursor")
    with pytest.raises(ValueError, match="limit"):
        await store.list_transfers(limit=0)


# --- files


async def test_files_upsert_and_order(store: Store) -> None:
    b = await store.upsert_file("tr-1", FileRecord(source="s3://b/b", destination="/in/b",
                                                   size=3))
    await store.upsert_file("tr-1", FileRecord(source="s3://b/a", destination="/in/a", size=1))
    assert b.version == 1
    again = await store.upsert_file("tr-1", b.model_copy(update={
        "status": "DELIVERED", "bytes_confirmed": 3, "sha256": "ab", "verified_by": "size"}))
    assert again.version == 2 and again.status == "DELIVERED"
    files = await store.get_files("tr-1")
    assert [f.source for f in files] == ["s3://b/a", "s3://b/b"]
    assert files[1] == again
    assert await store.get_files("tr-other") == []


async def test_upsert_files_in_one_batch(make_store: MakeStore) -> None:
    store = make_store(counted=True)
    backend = store.backend
    assert isinstance(backend, CountingBackend)
    await store.upsert_file("tr-1", FileRecord(source="a", destination="/a", size=1))
    await store.upsert_files("tr-1", [FileRecord(source=s, destination=f"/{s}", size=2,
                                                 status="RUNNING") for s in "abc"])
    assert backend.calls["put_many", "files"] == 1
    files = await store.get_files("tr-1")
    assert [(f.source, f.size, f.version) for f in files] == [("a", 2, 2), ("b", 2, 1),
                                                              ("c", 2, 1)]


# --- audit trail


async def test_audit_appends_in_order(store: Store) -> None:
    seqs = [await store.append_audit("tr-1", f"e{i}", {"i": i}, at=100.0 + i)
            for i in range(3)]
    assert seqs == [1, 2, 3]
    entries = await store.audit("tr-1")
    assert [(e.seq, e.event, e.detail, e.at) for e in entries] == [
        (1, "e0", {"i": 0}, 100.0), (2, "e1", {"i": 1}, 101.0), (3, "e2", {"i": 2}, 102.0)]
    assert await store.audit("tr-other") == []


async def test_audit_never_overwrites(make_store: MakeStore) -> None:
    stores = [make_store(), make_store()]
    seqs = await asyncio.gather(*(stores[i % 2].append_audit("tr-1", "e", {"i": i}, at=1.0)
                                  for i in range(20)))
    assert sorted(seqs) == list(range(1, 21))
    entries = await stores[0].audit("tr-1")
    assert [e.seq for e in entries] == list(range(1, 21))
    assert sorted(e.detail["i"] for e in entries) == list(range(20))  # none overwritten


# --- idempotency of side effects


async def test_record_once(make_store: MakeStore) -> None:
    store = make_store()
    assert await store.record_once("tickets", "tr-1", {"id": "INC1"}) == (True, {"id": "INC1"})
    assert await store.record_once("tickets", "tr-1", {"id": "INC2"}) == (False, {"id": "INC1"})
    assert (await store.record_once("tickets", "tr-2", {"id": "INC3"}))[0] is True
    assert (await store.record_once("notify", "tr-1", {"x": 1}))[0] is True
    other = make_store()
    results = await asyncio.gather(*(s.record_once("n", "k", {"by": i})
                                     for i, s in enumerate([store, other] * 5)))
    winners = [value for first, value in results if first]
    assert len(winners) == 1
    assert all(value == winners[0] for _, value in results)


async def test_update_recorded_changes_what_was_kept(make_store: MakeStore) -> None:
    store, other = make_store(), make_store()
    await store.record_once("approval_request", "tr-1", {"callback_id": "a", "n": 0})
    assert await store.update_recorded("approval_request", "tr-1",
                                       lambda v: {**(v or {}), "callback_id": "b"}) == {
        "callback_id": "b", "n": 0}
    assert await store.update_recorded("approval_request", "tr-1", lambda v: None) == {
        "callback_id": "b", "n": 0}  # None keeps it
    assert await other.recorded("approval_request", "tr-1") == {"callback_id": "b", "n": 0}
    assert await store.update_recorded("approval_request", "tr-2", lambda v: None) is None
    # concurrent increments from two stores: none is lost (optimistic retries)
    await asyncio.gather(*(s.update_recorded("approval_request", "tr-1",
                                             lambda v: {**(v or {}), "n": (v or {})["n"] + 1})
                           for s in [store, other] * 3))
    assert (await store.recorded("approval_request", "tr-1") or {})["n"] == 6


# --- workflow: checkpoints, history, unfinished executions


async def test_checkpoints_and_history(store: Store) -> None:
    assert await store.load_checkpoint("ex-1") is None
    assert await store.history("ex-1") == []
    await store.save_checkpoint("ex-1", {"state": "Validate", "n": 1})
    await store.save_checkpoint("ex-1", {"state": "Transfer", "n": 2})
    assert await store.load_checkpoint("ex-1") == {"state": "Transfer", "n": 2}
    for i in range(12):
        assert await store.append_history("ex-1", {"type": "StateEntered", "i": i}) == i + 1
    assert [e["i"] for e in await store.history("ex-1")] == list(range(12))
    assert await store.history("ex-2") == []


async def test_unfinished_executions(store: Store) -> None:
    await store.create_transfer(transfer("tr-run", execution_id="ex-run", status="RUNNING"))
    await store.save_checkpoint("ex-run", {"state": "Transfer"})
    await store.create_transfer(transfer("tr-done", execution_id="ex-done"))
    await store.save_checkpoint("ex-done", {"state": "Transfer"})
    await store.update_transfer("tr-done", status="SUCCEEDED")
    await store.save_checkpoint("ex-early", {"state": "Validate"})  # no transfer yet
    await store.create_transfer(transfer("tr-nocp", execution_id="ex-nocp"))  # no checkpoint
    # linked only through the checkpoint, and already final
    await store.create_transfer(transfer("tr-linked", status="CANCELLED"))
    await store.save_checkpoint("ex-linked", {"transfer_id": "tr-linked"})
    assert sorted(await store.unfinished_executions()) == ["ex-early", "ex-run"]

    await store.update_transfer("tr-run", status="FAILED")
    await store.create_transfer(transfer("tr-early", execution_id="ex-early", status="REFUSED"))
    assert await store.unfinished_executions() == []


# --- leases


async def test_lease_lifecycle(store: Store) -> None:
    assert await store.lease_owner("ex-1", now=0.0) is None
    assert await store.acquire_lease("ex-1", "a", now=0.0, ttl=10.0)
    assert await store.lease_owner("ex-1", now=5.0) == "a"
    assert not await store.acquire_lease("ex-1", "b", now=5.0, ttl=10.0)
    assert await store.acquire_lease("ex-1", "a", now=6.0, ttl=10.0)  # ours already
    assert await store.renew_lease("ex-1", "a", now=8.0, ttl=10.0)
    assert not await store.renew_lease("ex-1", "b", now=8.0, ttl=10.0)
    # heartbeat 8 + ttl 10: held through 18, expired after
    assert not await store.acquire_lease("ex-1", "b", now=18.0, ttl=10.0)
    assert await store.lease_owner("ex-1", now=18.0) == "a"
    assert await store.lease_owner("ex-1", now=18.5) is None
    assert await store.acquire_lease("ex-1", "b", now=18.5, ttl=10.0)
    assert not await store.renew_lease("ex-1", "a", now=19.0, ttl=10.0)
    assert not await store.acquire_lease("ex-1", "a", now=19.0, ttl=10.0)
    assert not await store.release_lease("ex-1", "a")
    assert await store.lease_owner("ex-1", now=19.0) == "b"
    assert await store.release_lease("ex-1", "b")
    assert await store.lease_owner("ex-1", now=19.0) is None
    assert not await store.renew_lease("ex-1", "b", now=19.0, ttl=10.0)
    assert await store.acquire_lease("ex-1", "a", now=20.0, ttl=10.0)


async def test_lease_contention_has_one_winner(make_store: MakeStore) -> None:
    stores = [make_store() for _ in range(4)]
    for round_ in range(5):
        won = await asyncio.gather(*(s.acquire_lease(f"ex-{round_}", f"o{i}", 0.0, 30.0)
                                     for i, s in enumerate(stores * 3)))
        owners = {f"o{i}" for i, ok in enumerate(won) if ok}  # the names each call used
        assert len(owners) == 1
        assert await stores[0].lease_owner(f"ex-{round_}", 1.0) in owners


# --- secrets are never stored


@pytest.mark.parametrize("options", [
    {"password": "hunter2"},
    {"auth": {"Password": "hunter2"}},
    {"hops": [{"x": 1}, {"client_secret": "s"}]},
    {"SFTP_PRIVATE_KEY": "-----BEGIN"},
    {"nested": {"deeper": {"accessToken": "t"}}},
    {"apiKey": "k"},
])
async def test_secrets_are_refused(store: Store, options: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="refuses to keep secrets"):
        await store.create_transfer(transfer(options=options))
    assert await store.get_transfer("tr-1") is None
    await store.create_transfer(transfer())
    with pytest.raises(ValueError, match="secrets"):
        await store.update_transfer("tr-1", options=options)
    with pytest.raises(ValueError, match="secrets"):
        await store.record_once("tickets", "tr-1", options)
    with pytest.raises(ValueError, match="secrets"):
        await store.save_checkpoint("ex-1", {"input": options})
    with pytest.raises(ValueError, match="secrets"):
        await store.append_history("ex-1", {"output": options})
    with pytest.raises(ValueError, match="secrets"):
        await store.append_audit("tr-1", "e", options, at=1.0)
    assert (await store.get_transfer("tr-1")) == transfer(version=1)
    assert await store.load_checkpoint("ex-1") is None
    assert await store.history("ex-1") == [] and await store.audit("tr-1") == []


def test_secret_guard_names_the_key_and_allows_references() -> None:
    with pytest.raises(ValueError, match=r"options\.auth\[1\]\.token"):
        refuse_secrets({"auth": [{}, {"token": "t"}]}, "options")
    refuse_secrets({"secret_ref": "config:destinations.acme", "password_env": "ACME_PW",
                    "SecretArn": "arn:aws:secretsmanager:...", "private_key_file": "~/.ssh/k",
                    "verify": "auto", "tickets": {"change": "CHG1"}, "keys": ["a"]})
