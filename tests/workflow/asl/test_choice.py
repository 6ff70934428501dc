"""Choice: every operator, type strictness, And/Or/Not, Default and the errors."""

from __future__ import annotations

from typing import Any

import pytest

from tests.workflow.asl.support import error_of, output_of

DATA = {
    "s": "b", "n": 10, "f": 2.5, "t": True, "ts": "2024-01-01T10:00:00Z", "z": None,
    "ref": {"s": "b", "n": 10.0, "t": True, "ts": "2024-01-01T11:00:00+01:00",
            "later": "2024-06-01T00:00:00.123456789Z"},
    "file": "report-2024.csv", "star": "a*b", "slash": "a\\b", "high": "\uffff",
    "emoji": "\U0001f600", "bad_ts": "2024-01-01t10:00:00z",
}


def machine(rule: dict[str, Any], **state: Any) -> dict[str, Any]:
    return {"StartAt": "C", "States": {
        "C": {"Type": "Choice", "Choices": [{**rule, "Next": "Yes"}], "Default": "No", **state},
        "Yes": {"Type": "Pass", "Result": True, "End": True},
        "No": {"Type": "Pass", "Result": False, "End": True}}}


async def holds(rule: dict[str, Any], data: Any = DATA) -> bool:
    out = await output_of(machine(rule), data)
    assert isinstance(out, bool)
    return out


def v(path: str, **op: Any) -> dict[str, Any]:
    return {"Variable": path, **op}


CASES: list[tuple[dict[str, Any], bool]] = [
    (v("$.s", StringEquals="b"), True),
    (v("$.s", StringEquals="B"), False),              # case-sensitive
    (v("$.n", StringEquals="10"), False),             # never coerced
    (v("$.s", StringLessThan="c"), True),
    (v("$.s", StringGreaterThan="a"), True),
    (v("$.s", StringLessThanEquals="b"), True),
    (v("$.s", StringGreaterThanEquals="c"), False),
    (v("$.high", StringGreaterThan="\U0001f600"), True),  # UTF-16 order, as Java
    (v("$.s", StringEqualsPath="$.ref.s"), True),
    (v("$.s", StringLessThanPath="$.ref.s"), False),
    (v("$.n", NumericEquals=10), True),
    (v("$.n", NumericEquals=10.0), True),
    (v("$.s", NumericEquals=10), False),
    (v("$.t", NumericEquals=1), False),                # a boolean is not a number
    (v("$.f", NumericLessThan=3), True),
    (v("$.f", NumericGreaterThan=2.5), False),
    (v("$.f", NumericGreaterThanEquals=2.5), True),
    (v("$.f", NumericLessThanEquals=2), False),
    (v("$.n", NumericEqualsPath="$.ref.n"), True),
    (v("$.f", NumericLessThanPath="$.n"), True),
    (v("$.n", NumericGreaterThanEqualsPath="$.ref.n"), True),
    (v("$.t", BooleanEquals=True), True),
    (v("$.n", BooleanEquals=True), False),
    (v("$.t", BooleanEqualsPath="$.ref.t"), True),
    (v("$.ts", TimestampEquals="2024-01-01T10:00:00Z"), True),
    (v("$.ts", TimestampEqualsPath="$.ref.ts"), True),  # same instant, other offset
    (v("$.ts", TimestampLessThanPath="$.ref.later"), True),
    (v("$.ts", TimestampGreaterThan="2023-12-31T23:59:59.999Z"), True),
    (v("$.ts", TimestampLessThanEquals="2024-01-01T10:00:00Z"), True),
    (v("$.ts", TimestampGreaterThanEquals="2024-01-01T10:00:01Z"), False),
    (v("$.bad_ts", TimestampEquals="2024-01-01T10:00:00Z"), False),  # lowercase t/z
    (v("$.s", TimestampEquals="2024-01-01T10:00:00Z"), False),
    (v("$.file", StringMatches="*.csv"), True),
    (v("$.file", StringMatches="report-*-*.csv"), False),
    (v("$.file", StringMatches="report*"), True),
    (v("$.star", StringMatches="a\\*b"), True),         # \* is a literal star
    (v("$.file", StringMatches="a\\*b"), False),
    (v("$.slash", StringMatches="a\\\\b"), True),       # \\ is a literal backslash
    (v("$.n", StringMatches="*"), False),
    (v("$.z", IsNull=True), True),
    (v("$.s", IsNull=False), True),
    (v("$.missing", IsPresent=False), True),
    (v("$.z", IsPresent=True), True),                   # present, with value null
    (v("$.n", IsNumeric=True), True),
    (v("$.t", IsNumeric=True), False),
    (v("$.s", IsString=True), True),
    (v("$.t", IsBoolean=True), True),
    (v("$.ts", IsTimestamp=True), True),
    (v("$.s", IsTimestamp=True), False),
    ({"And": [v("$.s", StringEquals="b"), v("$.n", NumericGreaterThan=5)]}, True),
    ({"And": [v("$.s", StringEquals="b"), v("$.n", NumericGreaterThan=50)]}, False),
    ({"Or": [v("$.s", StringEquals="x"), {"Not": v("$.t", BooleanEquals=False)}]}, True),
    ({"Not": {"Or": [v("$.s", StringEquals="x"), v("$.s", StringEquals="y")]}}, True),
    # the guard pattern: IsPresent first, so the missing Variable is never read
    ({"And": [v("$.missing", IsPresent=True), v("$.missing", StringEquals="x")]}, False),
    (v("$$.Execution.Input.s", StringEquals="b"), True),
]


@pytest.mark.parametrize(("rule", "expected"), CASES, ids=[str(c[0]) for c in CASES])
async def test_operator(rule: dict[str, Any], expected: bool) -> None:
    assert await holds(rule) is expected


async def test_first_matching_rule_wins_then_default() -> None:
    definition = {"StartAt": "C", "States": {
        "C": {"Type": "Choice", "Choices": [
            {"Variable": "$.n", "NumericGreaterThan": 100, "Next": "Big"},
            {"Variable": "$.n", "NumericGreaterThan": 1, "Next": "Medium"},
            {"Variable": "$.n", "NumericGreaterThan": 0, "Next": "Big"}],
            "Default": "Small"},
        "Big": {"Type": "Pass", "Result": "big", "End": True},
        "Medium": {"Type": "Pass", "Result": "medium", "End": True},
        "Small": {"Type": "Pass", "Result": "small", "End": True}}}
    assert await output_of(definition, {"n": 5}) == "medium"
    assert await output_of(definition, {"n": -1}) == "small"


async def test_input_and_output_paths_apply() -> None:
    definition = machine(v("$.s", StringEquals="b"), InputPath="$.ref", OutputPath="$.n")
    definition["States"]["Yes"] = {"Type": "Pass", "End": True}
    assert await output_of(definition, DATA) == 10.0


async def test_missing_variable_is_runtime() -> None:
    error, cause = await error_of(machine(v("$.missing", StringEquals="x")), DATA)
    assert error == "States.Runtime" and cause and "$.missing" in cause


async def test_no_match_without_default_is_no_choice_matched() -> None:
    definition = {"StartAt": "C", "States": {
        "C": {"Type": "Choice", "Choices": [v("$.s", StringEquals="x") | {"Next": "E"}]},
        "E": {"Type": "Succeed"}}}
    assert (await error_of(definition, DATA))[0] == "States.NoChoiceMatched"
