"""The primitives every backend implements with identical semantics."""

from __future__ import annotations

import pytest

from fileferry.store import Backend, ConditionFailed, Row


async def test_get_missing_is_none(backend: Backend) -> None:
    assert await backend.get("t", "p", "s") is None


async def test_put_if_absent_refuses_an_existing_item(backend: Backend) -> None:
    await backend.put("t", "p", "s", {"a": 1, "version": 1}, if_absent=True)
    with pytest.raises(ConditionFailed):
        await backend.put("t", "p", "s", {"a": 2, "version": 1}, if_absent=True)
    assert await backend.get("t", "p", "s") == {"a": 1, "version": 1}


async def test_put_if_version_needs_that_version(backend: Backend) -> None:
    with pytest.raises(ConditionFailed):  # missing is not version 1
        await backend.put("t", "p", "s", {"version": 2}, if_version=1)
    await backend.put("t", "p", "s", {"a": 1, "version": 1})
    await backend.put("t", "p", "s", {"a": 2, "version": 2}, if_version=1)
    with pytest.raises(ConditionFailed):
        await backend.put("t", "p", "s", {"a": 3, "version": 3}, if_version=1)
    assert await backend.get("t", "p", "s") == {"a": 2, "version": 2}
    with pytest.raises(ValueError, match="exclude"):
        await backend.put("t", "p", "s", {"version": 3}, if_absent=True, if_version=2)


async def test_unserialisable_item_writes_nothing(backend: Backend) -> None:
    with pytest.raises((TypeError, ValueError)):
        await backend.put("t", "p", "s", {"bad": object(), "version": 1})
    assert await backend.get("t", "p", "s") is None


async def test_delete(backend: Backend) -> None:
    await backend.put("t", "p", "s", {"version": 1})
    await backend.delete("t", "p", "s")
    await backend.delete("t", "p", "s")  # missing: not an error
    assert await backend.get("t", "p", "s") is None


async def test_tables_and_partitions_are_separate(backend: Backend) -> None:
    await backend.put("t1", "p", "s", {"n": 1, "version": 1})
    await backend.put("t2", "p", "s", {"n": 2, "version": 1})
    await backend.put("t1", "q", "s", {"n": 3, "version": 1})
    assert [r.item["n"] for r in await backend.query("t1", "p")] == [1]
    assert [r.item["n"] for r in await backend.scan("t1")] == [1, 3]


async def test_query_orders_filters_and_limits(backend: Backend) -> None:
    for sk in ("b2", "a1", "b1", "c", "b10"):
        await backend.put("t", "p", sk, {"sk": sk, "version": 1})
    assert [r.sk for r in await backend.query("t", "p")] == ["a1", "b1", "b10", "b2", "c"]
    assert [r.sk for r in await backend.query("t", "p", sk_prefix="b")] == ["b1", "b10", "b2"]
    assert [r.sk for r in await backend.query("t", "p", reverse=True, limit=2)] == ["c", "b2"]
    assert [r.sk for r in await backend.query("t", "p", sk_prefix="b", limit=1,
                                              reverse=True)] == ["b2"]
    assert await backend.query("t", "p", sk_prefix="z") == []
    assert await backend.query("t", "other") == []


async def test_scan_filters_pages_and_resumes(backend: Backend) -> None:
    for i in range(6):
        await backend.put("t", f"p{i}", "_", {"i": i, "even": i % 2 == 0, "tag": None,
                                              "name": str(i), "version": 1})
    evens = await backend.scan("t", where={"even": True})
    assert [r.item["i"] for r in evens] == [0, 2, 4]
    assert [r.item["i"] for r in await backend.scan("t", where={"name": "3"})] == [3]
    assert await backend.scan("t", where={"name": 3}) == []  # types are compared too
    assert len(await backend.scan("t", where={"tag": None})) == 6
    # limit counts matching items; start_after is exclusive
    first = await backend.scan("t", where={"even": False}, limit=2)
    assert [r.item["i"] for r in first] == [1, 3]
    rest = await backend.scan("t", where={"even": False}, start_after=(first[-1].pk,
                                                                        first[-1].sk))
    assert [r.item["i"] for r in rest] == [5]


async def test_put_many_writes_all(backend: Backend) -> None:
    await backend.put("t", "p", "a", {"old": True, "version": 1})
    await backend.put_many("t", [Row("p", "a", {"n": 1, "version": 2}),
                                 Row("p", "b", {"n": 2, "version": 1})])
    assert [r.item for r in await backend.query("t", "p")] == [{"n": 1, "version": 2},
                                                               {"n": 2, "version": 1}]
    await backend.put_many("t", [])


async def test_closed_backend_refuses(backend: Backend) -> None:
    await backend.put("t", "p", "s", {"version": 1})
    await backend.close()
    await backend.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        await backend.get("t", "p", "s")
