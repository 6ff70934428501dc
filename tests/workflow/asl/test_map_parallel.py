"""Inline Map and Parallel: order, concurrency limits, failure, selectors, Retry/Catch."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from fileferry.workflow.asl import TaskFailed
from tests.workflow.asl.support import RecordingJournal, error_of, output_of, single

TASK_PROCESSOR = {"StartAt": "Work", "States": {
    "Work": {"Type": "Task", "Resource": "work", "End": True}}}


def map_state(**fields: Any) -> dict[str, Any]:
    return single({"Type": "Map", "ItemProcessor": TASK_PROCESSOR, **fields})


class Worker:
    """Counts concurrent invocations; item ``fail_on`` raises; later items finish first."""

    def __init__(self, fail_on: Any = None) -> None:
        self.active = self.peak = 0
        self.started: list[Any] = []
        self.cancelled: list[Any] = []
        self.fail_on = fail_on

    async def __call__(self, resource: str, payload: Any, context: dict[str, Any]) -> Any:
        self.started.append(payload)
        self.active += 1
        self.peak = max(self.peak, self.active)
        try:
            for _ in range(60 - payload if isinstance(payload, int) else 1):
                await asyncio.sleep(0)
            if payload == self.fail_on:
                raise TaskFailed("ItemBroken", f"item {payload}")
            return {"done": payload}
        except asyncio.CancelledError:
            self.cancelled.append(payload)
            raise
        finally:
            self.active -= 1


async def test_output_keeps_input_order_although_later_items_finish_first() -> None:
    worker = Worker()
    out = await output_of(map_state(ItemsPath="$.items"), {"items": list(range(8))},
                          invoker=worker)
    assert out == [{"done": i} for i in range(8)]
    assert worker.peak == 8


@pytest.mark.parametrize(("fields", "peak"), [
    ({"MaxConcurrency": 3}, 3),
    ({"MaxConcurrencyPath": "$.limit"}, 2),
    ({"MaxConcurrency": 0}, 40),   # "unlimited" is AWS's 40 inline iterations
    ({}, 40),
])
async def test_concurrency_limit(fields: dict[str, Any], peak: int) -> None:
    worker = Worker()
    out = await output_of(map_state(ItemsPath="$.items", **fields),
                          {"items": list(range(50)), "limit": 2}, invoker=worker)
    assert len(out) == 50 and worker.peak == peak


async def test_max_concurrency_one_runs_in_order() -> None:
    worker = Worker()
    await output_of(map_state(MaxConcurrency=1), [3, 1, 2], invoker=worker)
    assert worker.started == [3, 1, 2] and worker.peak == 1


async def test_first_failure_fails_the_map_and_stops_the_rest() -> None:
    started: list[int] = []
    cancelled: list[int] = []

    async def invoker(resource: str, payload: Any, context: dict[str, Any]) -> Any:
        started.append(payload)
        if payload == 2:
            raise TaskFailed("ItemBroken", "item 2")
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.append(payload)
            raise

    error, cause = await error_of(map_state(MaxConcurrency=4), list(range(10)),
                                  invoker=invoker)
    assert (error, cause) == ("ItemBroken", "item 2")
    assert started == [0, 1, 2, 3]  # four at once; item 4 and later never started
    assert sorted(cancelled) == [0, 1, 3]


async def test_map_retry_reruns_every_iteration_and_catch_handles_the_error() -> None:
    worker = Worker(fail_on=2)
    definition = {"StartAt": "M", "States": {
        "M": {"Type": "Map", "ItemProcessor": TASK_PROCESSOR, "End": True, "ItemsPath": "$.i",
              "Retry": [{"ErrorEquals": ["ItemBroken"], "MaxAttempts": 1}],
              "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error",
                         "Next": "Recover"}]},
        "Recover": {"Type": "Pass", "OutputPath": "$.error", "End": True}}}
    out = await output_of(definition, {"i": [1, 2]}, invoker=worker)
    assert out == {"Error": "ItemBroken", "Cause": "item 2"}
    assert sorted(worker.started) == [1, 1, 2, 2]


async def test_item_selector_sees_the_effective_input_and_map_item() -> None:
    definition = map_state(
        InputPath="$.job", ItemsPath="$.files",
        ItemSelector={"dest.$": "$.dest", "index.$": "$$.Map.Item.Index",
                      "file.$": "$$.Map.Item.Value", "const": 1},
        ResultSelector={"all.$": "$"}, ResultPath="$.job.results", OutputPath="$.job")
    data = {"job": {"dest": "partner", "files": ["a", "b"]}, "other": 1}
    out = await output_of(definition, data, invoker=lambda r, p, c: _echo(p))
    assert out == {"dest": "partner", "files": ["a", "b"], "results": {"all": [
        {"dest": "partner", "index": 0, "file": "a", "const": 1},
        {"dest": "partner", "index": 1, "file": "b", "const": 1}]}}


async def _echo(payload: Any) -> Any:
    return payload


async def test_legacy_iterator_and_parameters() -> None:
    definition = single({
        "Type": "Map", "Parameters": {"v.$": "$$.Map.Item.Value", "i.$": "$$.Map.Item.Index"},
        "Iterator": {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}}})
    assert await output_of(definition, ["x", "y"]) == [{"v": "x", "i": 0}, {"v": "y", "i": 1}]


async def test_map_item_is_not_visible_inside_the_iteration() -> None:
    definition = single({"Type": "Map", "ItemProcessor": {"StartAt": "P", "States": {
        "P": {"Type": "Pass", "Parameters": {"i.$": "$$.Map.Item.Index"}, "End": True}}}})
    assert (await error_of(definition, [1]))[0] == "States.Runtime"


async def test_items_path_must_select_an_array_and_empty_gives_empty() -> None:
    assert (await error_of(map_state(ItemsPath="$.n"), {"n": 1}))[0] == "States.Runtime"
    assert await output_of(map_state(), []) == []


async def test_nested_map_paths_in_the_journal() -> None:
    inner = {"Type": "Map", "ItemProcessor": {"StartAt": "Leaf", "States": {
        "Leaf": {"Type": "Pass", "End": True}}}, "End": True}
    definition = single({"Type": "Map", "ItemProcessor": {"StartAt": "Inner", "States": {
        "Inner": inner}}})
    definition["StartAt"] = "S"
    journal = RecordingJournal()
    assert await output_of(definition, [[1], [2, 3]], journal=journal) == [[1], [2, 3]]
    items = [e for e in journal.events if e[0] == "item"]
    assert ("item", "S/1/Inner", 1) in items and ("item", "S", 0) in items
    assert ("entered", "S/1/Inner/0/Leaf", "Leaf") in journal.events


PARALLEL = {"Type": "Parallel", "Branches": [
    {"StartAt": "A", "States": {"A": {"Type": "Task", "Resource": "a", "End": True}}},
    {"StartAt": "B", "States": {"B": {"Type": "Pass", "Parameters": {"b.$": "$.v"},
                                      "End": True}}}]}


async def test_parallel_branches_get_the_input_and_output_in_branch_order() -> None:
    async def slow_a(resource: str, payload: Any, context: dict[str, Any]) -> Any:
        for _ in range(5):
            await asyncio.sleep(0)
        return {"a": payload["v"]}

    definition = single({**PARALLEL, "Parameters": {"v.$": "$.x"}, "ResultPath": "$.r",
                         "ResultSelector": {"first.$": "$[0]", "second.$": "$[1]"}})
    out = await output_of(definition, {"x": 5}, invoker=slow_a)
    assert out == {"x": 5, "r": {"first": {"a": 5}, "second": {"b": 5}}}


async def test_a_failing_branch_fails_the_parallel_with_its_own_error() -> None:
    cancelled: list[str] = []

    async def invoker(resource: str, payload: Any, context: dict[str, Any]) -> Any:
        if resource == "bad":
            raise TaskFailed("BranchBroke", "no")
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.append(resource)
            raise

    branches = [{"StartAt": n, "States": {n: {"Type": "Task", "Resource": n, "End": True}}}
                for n in ("slow", "bad")]
    definition = {"StartAt": "P", "States": {
        "P": {"Type": "Parallel", "Branches": branches, "End": True,
              "Catch": [{"ErrorEquals": ["BranchBroke"], "Next": "H"}]},
        "H": {"Type": "Pass", "End": True}}}
    assert await output_of(definition, {}, invoker=invoker) == {"Error": "BranchBroke",
                                                                  "Cause": "no"}
    assert cancelled == ["slow"]
