"""Whole executions: Wait, Succeed/Fail, context object, journal, cancel, resume, timeouts."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from fileferry.workflow.asl import Checkpoint, StateMachine, TaskFailed, execute
from tests.workflow.asl.support import (
    FakeTime,
    RecordingJournal,
    echo,
    error_of,
    output_of,
    run,
    single,
)

START = 1_700_000_000.0  # 2023-11-14T22:13:20Z


@pytest.mark.parametrize(("wait", "data", "sleeps"), [
    ({"Seconds": 5}, {}, [5]),
    ({"Seconds": 0}, {}, []),
    ({"SecondsPath": "$.s"}, {"s": 7}, [7]),
    ({"Timestamp": "2023-11-14T22:14:00Z"}, {}, [40]),
    ({"TimestampPath": "$.t"}, {"t": "2023-11-14T23:13:20+01:00"}, []),  # now: no wait
    ({"Timestamp": "2020-01-01T00:00:00Z"}, {}, []),                      # past: no wait
])
async def test_wait_uses_the_injected_clock_and_sleep(wait: dict[str, Any], data: Any,
                                                      sleeps: list[float]) -> None:
    time = FakeTime(START)
    assert await output_of(single({"Type": "Wait", **wait}), data, time=time) == data
    assert time.sleeps == sleeps


@pytest.mark.parametrize(("wait", "data"), [
    ({"SecondsPath": "$.s"}, {"s": -1}),
    ({"SecondsPath": "$.s"}, {"s": "5"}),
    ({"TimestampPath": "$.t"}, {"t": "tomorrow"}),
    ({"SecondsPath": "$.missing"}, {}),
])
async def test_bad_wait_inputs_are_runtime(wait: dict[str, Any], data: Any) -> None:
    assert (await error_of(single({"Type": "Wait", **wait}), data))[0] == "States.Runtime"


async def test_wait_and_succeed_apply_input_and_output_paths() -> None:
    definition = {"StartAt": "W", "States": {
        "W": {"Type": "Wait", "Seconds": 1, "InputPath": "$.a", "Next": "S"},
        "S": {"Type": "Succeed", "OutputPath": "$.b"}}}
    assert await output_of(definition, {"a": {"b": 2}}) == 2


@pytest.mark.parametrize(("fail", "data", "expected"), [
    ({"Error": "Boom", "Cause": "why"}, {}, ("Boom", "why")),
    ({"ErrorPath": "$.e", "CausePath": "$.c"}, {"e": "E1", "c": "C1"}, ("E1", "C1")),
    ({"ErrorPath": "$$.State.Name",
      "CausePath": "States.Format('code {}', $.code)"}, {"code": 7}, ("S", "code 7")),
    ({}, {}, (None, None)),
    ({"ErrorPath": "$.e"}, {"e": 1}, ("States.Runtime", "ErrorPath must select a string, "
                                                      "got 1")),
])
async def test_fail_state(fail: dict[str, Any], data: Any,
                          expected: tuple[str | None, str | None]) -> None:
    assert await error_of(single({"Type": "Fail", **fail}), data) == expected


async def test_context_object() -> None:
    contexts: list[dict[str, Any]] = []

    async def invoker(resource: str, payload: Any, context: dict[str, Any]) -> Any:
        contexts.append(context)
        return payload

    definition = {"StartAt": "W", "States": {
        "W": {"Type": "Wait", "Seconds": 5, "Next": "T"},
        "T": {"Type": "Task", "Resource": "${Fn}", "End": True, "Parameters": {
            "id.$": "$$.Execution.Id", "name.$": "$$.Execution.Name",
            "input.$": "$$.Execution.Input", "start.$": "$$.Execution.StartTime",
            "state.$": "$$.State", "machine.$": "$$.StateMachine.Name"}}}}
    machine = StateMachine.load(definition, {"Fn": "local:fn"}, name="Demo")
    time = FakeTime(START)
    result = await execute(machine, {"k": 1}, invoker=invoker, execution_id="exec-arn",
                           execution_name="run-1", clock=time.clock, sleep=time.sleep)
    assert result.output == {
        "id": "exec-arn", "name": "run-1", "input": {"k": 1},
        "start": "2023-11-14T22:13:20.000Z", "machine": "Demo",
        "state": {"Name": "T", "EnteredTime": "2023-11-14T22:13:25.000Z", "RetryCount": 0}}
    assert contexts[0]["State"]["Name"] == "T"
    assert contexts[0]["StateMachine"]["Id"] == machine.arn
    assert "Map" not in contexts[0]


async def test_default_execution_name_and_id() -> None:
    out = await output_of(single({"Type": "Pass", "Parameters": {
        "id.$": "$$.Execution.Id", "name.$": "$$.Execution.Name"}}))
    assert out["id"].endswith(":" + out["name"]) and len(out["name"]) == 36


async def test_journal_sees_every_state_and_checkpoints_every_top_level_transition() -> None:
    journal = RecordingJournal()
    definition = {"StartAt": "A", "States": {
        "A": {"Type": "Pass", "Result": 1, "ResultPath": "$.a", "Next": "B"},
        "B": {"Type": "Task", "Resource": "fn", "ResultPath": "$.b", "End": True}}}
    await output_of(definition, {}, invoker=echo, journal=journal)
    assert journal.events == [("entered", "A", "A"), ("exited", "A", "A"),
                              ("entered", "B", "B"), ("exited", "B", "B")]
    assert journal.checkpoints == [
        {"next_state": "A", "input": {}, "map_items": {}},
        {"next_state": "B", "input": {"a": 1}, "map_items": {}},
        {"next_state": None, "input": {"a": 1, "b": {"a": 1}}, "map_items": {}}]


async def test_checkpoint_round_trips_through_json() -> None:
    cp = Checkpoint("Files", {"x": [1]}, {"Files": {0: "a", 12: {"b": None}}})
    again = Checkpoint.from_dict(json.loads(json.dumps(cp.to_dict())))
    assert again == cp
    assert Checkpoint.from_dict({"next_state": None, "input": 1}) == Checkpoint(None, 1)


class Counting:
    def __init__(self, fail_on: Any = None) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.fail_on = fail_on

    async def __call__(self, resource: str, payload: Any, context: dict[str, Any]) -> Any:
        self.calls.append((resource, payload))
        if payload == self.fail_on:
            raise TaskFailed("Crash", "simulated crash")
        return {"r": resource, "p": payload}


PIPELINE = {"StartAt": "Prep", "States": {
    "Prep": {"Type": "Task", "Resource": "prep", "ResultPath": "$.prep", "Next": "Files"},
    "Files": {"Type": "Map", "ItemsPath": "$.items", "MaxConcurrency": 1,
              "ItemProcessor": {"StartAt": "Copy", "States": {
                  "Copy": {"Type": "Task", "Resource": "copy", "End": True}}},
              "ResultPath": "$.copied", "Next": "Done"},
    "Done": {"Type": "Task", "Resource": "done", "Parameters": {"n.$": "$.copied"},
             "End": True}}}


async def test_resume_runs_only_what_is_left() -> None:
    data = {"items": [1, 2, 3, 4]}
    journal, first = RecordingJournal(), Counting(fail_on=3)
    failed = await run(PIPELINE, data, invoker=first, journal=journal)
    assert (failed.status, failed.error) == ("FAILED", "Crash")
    assert journal.latest is not None
    saved = json.loads(json.dumps(journal.latest.to_dict()))  # as a store would keep it
    assert saved["next_state"] == "Files" and saved["map_items"] == {
        "Files": {"0": {"r": "copy", "p": 1}, "1": {"r": "copy", "p": 2}}}

    second, journal2 = Counting(), RecordingJournal()
    resumed = await run(PIPELINE, data, invoker=second, journal=journal2,
                        resume=Checkpoint.from_dict(saved))
    assert resumed.status == "SUCCEEDED"
    assert second.calls == [("copy", 3), ("copy", 4), ("done", {"n": [
        {"r": "copy", "p": 1}, {"r": "copy", "p": 2}, {"r": "copy", "p": 3},
        {"r": "copy", "p": 4}]})]
    # the resumed items are repeated in the first checkpoint, so a second crash keeps them
    assert journal2.checkpoints[0]["map_items"] == saved["map_items"]
    fresh = await run(PIPELINE, data, invoker=Counting())
    assert resumed.output == fresh.output


async def test_resume_skips_done_items_of_a_nested_map() -> None:
    inner = {"Type": "Map", "ItemProcessor": {"StartAt": "Copy", "States": {
        "Copy": {"Type": "Task", "Resource": "copy", "End": True}}}, "End": True}
    definition = single({"Type": "Map", "ItemProcessor": {"StartAt": "Inner", "States": {
        "Inner": inner}}})
    calls = Counting()
    resume = Checkpoint("S", [[1, 2], [3, 4]], {"S": {0: ["x", "y"]}, "S/1/Inner": {0: "z"}})
    out = await output_of(definition, [[1, 2], [3, 4]], invoker=calls, resume=resume)
    assert calls.calls == [("copy", 4)]
    assert out == [["x", "y"], ["z", {"r": "copy", "p": 4}]]


async def test_resume_at_the_end_or_at_an_unknown_state() -> None:
    done = await run(PIPELINE, {}, resume=Checkpoint(None, {"final": 1}))
    assert (done.status, done.output) == ("SUCCEEDED", {"final": 1})
    with pytest.raises(ValueError, match="'Nope'"):
        await run(PIPELINE, {}, resume=Checkpoint("Nope", {}))


async def test_cancel_aborts_running_tasks_and_starts_nothing_new() -> None:
    cancel, cancelled, started = asyncio.Event(), [], []

    async def invoker(resource: str, payload: Any, context: dict[str, Any]) -> Any:
        started.append(payload)
        if len(started) == 2:
            cancel.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.append(payload)
            raise

    definition = {"StartAt": "M", "States": {
        "M": {"Type": "Map", "MaxConcurrency": 2, "ItemProcessor": {"StartAt": "T", "States": {
            "T": {"Type": "Task", "Resource": "t", "End": True}}}, "Next": "After"},
        "After": {"Type": "Task", "Resource": "after", "End": True}}}
    result = await run(definition, [1, 2, 3], invoker=invoker, cancel=cancel)
    assert (result.status, result.output, result.error) == ("ABORTED", None, None)
    assert started == [1, 2] and sorted(cancelled) == [1, 2]


async def test_cancel_set_before_the_start() -> None:
    cancel = asyncio.Event()
    cancel.set()
    result = await run(single({"Type": "Task", "Resource": "t"}), {}, cancel=cancel)
    assert result.status == "ABORTED"


async def test_top_level_timeout_fails_with_states_timeout() -> None:
    async def hangs(resource: str, payload: Any, context: dict[str, Any]) -> Any:
        await asyncio.Event().wait()

    time = FakeTime()
    definition = single({"Type": "Task", "Resource": "t"}, TimeoutSeconds=60)
    error, cause = await error_of(definition, {}, invoker=hangs, time=time)
    assert error == "States.Timeout" and cause and "60 seconds" in cause
    assert time.sleeps == [60]


async def test_an_oversized_execution_input_fails() -> None:
    error, _ = await error_of(single({"Type": "Pass"}), {"s": "x" * 300_000})
    assert error == "States.DataLimitExceeded"


async def test_one_machine_runs_many_executions_at_once() -> None:
    machine = StateMachine.load(single({"Type": "Task", "Resource": "t",
                                        "Parameters": {"n.$": "$$.Execution.Name"}}))
    results = await asyncio.gather(*(execute(machine, {}, invoker=echo, execution_name=str(i))
                                     for i in range(20)))
    assert [r.output for r in results] == [{"n": str(i)} for i in range(20)]
