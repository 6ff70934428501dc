"""The I/O pipeline: InputPath, Parameters, ResultSelector, ResultPath, OutputPath, limits."""

from __future__ import annotations

from typing import Any

import pytest

from fileferry.workflow.asl import MAX_PAYLOAD_BYTES
from tests.workflow.asl.support import echo, error_of, output_of, single

RAW: dict[str, Any] = {"id": 7, "sub": {"a": 1, "b": [10, 20, 30]}, "items": [{"n": 1}, {"n": 2}],
       "x.y": "dotted", "flag": False, "nothing": None}


class Calls:
    """An invoker that records each task input and returns a fixed result."""

    def __init__(self, result: Any = "R") -> None:
        self.inputs: list[Any] = []
        self.result = result

    async def __call__(self, resource: str, payload: Any, context: dict[str, Any]) -> Any:
        self.inputs.append(payload)
        return self.result


def task(**fields: Any) -> dict[str, Any]:
    return single({"Type": "Task", "Resource": "fn", **fields})


async def test_defaults_pass_the_whole_input_and_replace_it_with_the_result() -> None:
    calls = Calls({"done": True})
    assert await output_of(task(), RAW, invoker=calls) == {"done": True}
    assert calls.inputs == [RAW]


async def test_input_path_selects_and_null_gives_an_empty_object() -> None:
    calls = Calls()
    await output_of(task(InputPath="$.sub"), RAW, invoker=calls)
    await output_of(task(InputPath=None), RAW, invoker=calls)
    assert calls.inputs == [RAW["sub"], {}]


async def test_result_path_merges_into_the_raw_input_not_the_effective_input() -> None:
    out = await output_of(task(InputPath="$.sub", ResultPath="$.sub.result"), RAW,
                          invoker=Calls(5))
    assert out == {**RAW, "sub": {**RAW["sub"], "result": 5}}


async def test_result_path_creates_missing_objects_and_overwrites_nodes() -> None:
    out = await output_of(task(ResultPath="$.new.deep.r"), {"k": 1}, invoker=Calls(5))
    assert out == {"k": 1, "new": {"deep": {"r": 5}}}
    out = await output_of(task(ResultPath="$.sub.b[1]"), RAW, invoker=Calls(5))
    assert out["sub"]["b"] == [10, 5, 30]
    assert RAW["sub"]["b"] == [10, 20, 30]  # the input itself is never modified


async def test_result_path_null_keeps_the_input_and_discards_the_result() -> None:
    assert await output_of(task(ResultPath=None), RAW, invoker=Calls(5)) == RAW


async def test_output_path_selects_from_the_merged_result_and_null_gives_empty() -> None:
    out = await output_of(task(ResultPath="$.r", OutputPath="$.r"), RAW, invoker=Calls([1]))
    assert out == [1]
    assert await output_of(task(OutputPath=None), RAW, invoker=Calls(1)) == {}


@pytest.mark.parametrize(("raw", "path"), [
    ({"a": "text"}, "$.a.b"),      # stepping into a string
    ([1, 2], "$.a"),               # the raw input is not an object
    ({"a": [1]}, "$.a[3]"),        # index outside the array
])
async def test_result_path_that_cannot_apply_is_a_catchable_match_failure(
        raw: Any, path: str) -> None:
    error, cause = await error_of(task(ResultPath=path), raw, invoker=Calls(5))
    assert error == "States.ResultPathMatchFailure"
    assert cause and path in cause
    caught = {"StartAt": "S", "States": {
        "S": {"Type": "Task", "Resource": "fn", "ResultPath": path, "End": True,
              "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "H", "ResultPath": "$"}]},
        "H": {"Type": "Pass", "End": True}}}
    out = await output_of(caught, raw, invoker=Calls(5))
    assert out["Error"] == "States.ResultPathMatchFailure"


async def test_missing_input_path_is_runtime_and_not_caught() -> None:
    definition = {"StartAt": "S", "States": {
        "S": {"Type": "Task", "Resource": "fn", "InputPath": "$.nope", "End": True,
              "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "T"}],
              "Retry": [{"ErrorEquals": ["States.ALL"]}]},
        "T": {"Type": "Succeed"}}}
    error, cause = await error_of(definition, RAW, invoker=Calls())
    assert error == "States.Runtime"
    assert cause and "$.nope" in cause


async def test_missing_output_path_and_parameter_path_are_runtime() -> None:
    assert (await error_of(single({"Type": "Pass", "OutputPath": "$.nope"}), RAW))[0] \
        == "States.Runtime"
    error, cause = await error_of(single({"Type": "Pass", "Parameters": {"v.$": "$.nope"}}),
                                  RAW)
    assert error == "States.Runtime"
    assert cause and "'$.nope' specified for the field 'v.$'" in cause


async def test_parameters_template_recurses_and_leaves_literals_alone() -> None:
    parameters = {
        "literal": "$.id", "num": 1, "none": None,
        "id.$": "$.id",
        "nested": {"first.$": "$.sub.b[0]", "list": [{"n.$": "$.items[1].n"}, "x"]},
        "dotted.$": "$['x.y']", "flag.$": "$.flag", "nothing.$": "$.nothing",
        "name.$": "$$.Execution.Name",
    }
    out = await output_of(single({"Type": "Pass", "Parameters": parameters}), RAW,
                          execution_name="run-1")
    assert out == {"literal": "$.id", "num": 1, "none": None, "id": 7,
                   "nested": {"first": 10, "list": [{"n": 2}, "x"]}, "dotted": "dotted",
                   "flag": False, "nothing": None, "name": "run-1"}


@pytest.mark.parametrize(("path", "expected"), [
    ("$.sub.b[0]", 10),                       # a definite index returns the element
    ("$.sub.b[-1]", 30),
    ("$.items[*].n", [1, 2]),                 # wildcard: a list
    ("$.sub.b[1:]", [20, 30]),                # slice: a list
    ("$.items[?(@.n > 1)]", [{"n": 2}]),      # filter: a list
    ("$.items[?(@.n > 5)]", []),              # ... empty when nothing matches
    ("$.nope[*]", []),
    ("$..n", [1, 2]),                         # descendants
    ("$.sub['a','b']", [1, [10, 20, 30]]),    # union of names
    ("$", RAW),
])
async def test_path_semantics(path: str, expected: Any) -> None:
    out = await output_of(single({"Type": "Pass", "Parameters": {"v.$": path}}), RAW)
    assert out == {"v": expected}


async def test_result_selector_reads_the_raw_result_and_pass_result_wins() -> None:
    out = await output_of(task(ResultSelector={"size.$": "$.Payload.size", "k": "v"},
                               ResultPath="$.r"), {"in": 1},
                          invoker=Calls({"Payload": {"size": 3}, "StatusCode": 200}))
    assert out == {"in": 1, "r": {"size": 3, "k": "v"}}
    pass_state = single({"Type": "Pass", "Result": {"r": 1}, "Parameters": {"p": 1},
                         "ResultPath": "$.out"})
    assert await output_of(pass_state, {"in": 1}) == {"in": 1, "out": {"r": 1}}
    assert await output_of(single({"Type": "Pass", "Result": None}), {"in": 1}) is None


async def test_task_data_is_copied_both_ways() -> None:
    seen: list[Any] = []

    async def mutating(resource: str, payload: Any, context: dict[str, Any]) -> Any:
        payload["sub"]["a"] = "changed"
        seen.append(payload)
        return (1, 2)  # tuples become lists

    out = await output_of(task(ResultPath="$.r"), RAW, invoker=mutating)
    assert out["sub"]["a"] == 1 and out["r"] == [1, 2]
    assert RAW["sub"]["a"] == 1


async def test_a_result_that_is_not_json_is_runtime() -> None:
    async def returns_a_set(resource: str, payload: Any, context: dict[str, Any]) -> Any:
        return {1, 2}

    error, cause = await error_of(task(), {}, invoker=returns_a_set)
    assert error == "States.Runtime" and cause and "not JSON" in cause


async def test_payload_limit_is_data_limit_exceeded_and_terminal() -> None:
    big = "x" * MAX_PAYLOAD_BYTES

    async def large(resource: str, payload: Any, context: dict[str, Any]) -> Any:
        return big

    catch_all = {"Catch": [{"ErrorEquals": ["States.ALL"], "Next": "T"}],
                 "Retry": [{"ErrorEquals": ["States.ALL"]}], "Next": "T"}
    definition = {"StartAt": "S", "States": {
        "S": {"Type": "Task", "Resource": "fn", **catch_all}, "T": {"Type": "Succeed"}}}
    assert (await error_of(definition, {}, invoker=large))[0] == "States.DataLimitExceeded"
    assert (await error_of(single({"Type": "Pass"}), {"s": big}))[0] \
        == "States.DataLimitExceeded"
    # exactly at the limit is fine: {"s":"..."} is 8 bytes of framing
    assert await output_of(single({"Type": "Pass"}), {"s": "y" * (MAX_PAYLOAD_BYTES - 8)})


async def test_echo_invoker_sees_the_parameters_payload() -> None:
    out = await output_of(task(Parameters={"a.$": "$.sub.a", "fixed": [1]}), RAW, invoker=echo)
    assert out == {"a": 1, "fixed": [1]}
