"""A second opinion: Task-less definitions run here and in moto's Step Functions interpreter.

moto (``execute_state_machine``) carries LocalStack's ASL interpreter, which is
tested against recorded AWS behaviour. Each definition runs in both; status,
output and error name must agree. Where moto is known to differ from the
AWS behaviour we implement, the case is skipped with the reason.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from tests.workflow.asl import test_choice, test_intrinsics
from tests.workflow.asl.support import run, single

ROLE = "arn:aws:iam::123456789012:role/parity"
EXECUTION_NAME = "parity-run"


@pytest.fixture(scope="module")
def sfn() -> Iterator[Any]:
    """moto's in-process Step Functions with real execution (flag from moto's core/config.py)."""
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        yield boto3.client("stepfunctions", region_name="us-east-1")


def run_in_moto(sfn: Any, definition: dict[str, Any], data: Any,
                name: str) -> tuple[str, Any, str | None]:
    arn = sfn.create_state_machine(name=name, definition=json.dumps(definition),
                                   roleArn=ROLE)["stateMachineArn"]
    execution = sfn.start_execution(stateMachineArn=arn, name=EXECUTION_NAME,
                                    input=json.dumps(data))["executionArn"]
    deadline = time.monotonic() + 30
    while (described := sfn.describe_execution(executionArn=execution))["status"] == "RUNNING":
        assert time.monotonic() < deadline, "moto's execution did not finish"
        time.sleep(0.005)
    if described["status"] != "SUCCEEDED" or described.get("output") == "null":
        time.sleep(0.05)  # moto's worker sets the status just before the output or error
        described = sfn.describe_execution(executionArn=execution)
    output = json.loads(described["output"]) if "output" in described else None
    return described["status"], output, described.get("error")


def pass_with(parameters: dict[str, Any]) -> dict[str, Any]:
    return single({"Type": "Pass", "Parameters": parameters})


INNER = {"StartAt": "I", "States": {"I": {"Type": "Pass", "End": True}}}
JAYWAY = ("moto wraps this definite path's value in a list; AWS evaluates with Jayway, where "
          "a path of names and single indices selects the node itself (CDK users read "
          "$[0].source.bucket as a string)")
# case -> why moto's answer is not AWS's (the case is skipped with this reason)
MOTO_DIFFERS: dict[str, str] = {
    "negative-index": JAYWAY,
    "index-then-field": JAYWAY,
    "filter-no-match": "moto raises States.Runtime where Jayway (AWS) returns []",
    "result-path-into-string": "moto fails with a Python TypeError as States.Runtime; AWS "
                               "raises States.ResultPathMatchFailure",
    "no-choice-matched": "moto reports States.Runtime; AWS documents States.NoChoiceMatched",
}
CHOICE_DIFFERS = {
    "$.high": "moto compares strings by code point; AWS (Java) by UTF-16 code unit",
    "$.ref.ts": "moto parses only YYYY-MM-DDTHH:MM:SSZ timestamps (no offsets)",
    "$.ref.later": "moto parses only YYYY-MM-DDTHH:MM:SSZ timestamps (no fractions)",
    ".999Z": "moto parses only YYYY-MM-DDTHH:MM:SSZ timestamps (no fractions)",
    "$.bad_ts": "moto's strptime accepts a lowercase t and z",
    "\\\\": "moto's StringMatches is fnmatch, without the \\* and \\\\ escapes",
}
INTRINSIC_DIFFERS = {
    "null": "moto's intrinsic grammar has no null literal",
    "\\": "moto does not unescape \\' \\{ \\} \\\\ in intrinsic string literals",
    ".5": "moto's intrinsic grammar fails on fractional number literals",
    "ArrayUnique": "moto cannot de-duplicate objects (unhashable dict)",
    "ArrayContains($.list, true)": "moto uses Python equality, where true == 1",
    "'a b', ''": "an empty delimiter set is unspecified by AWS; moto splits into characters",
}

CASES: dict[str, tuple[dict[str, Any], Any]] = {
    "pass-result-path": (single({"Type": "Pass", "Result": {"r": [1, 2]},
                                 "ResultPath": "$.deep.er"}), {"a": 1}),
    "pass-null-paths": ({"StartAt": "A", "States": {
        "A": {"Type": "Pass", "InputPath": None, "ResultPath": "$.x", "Next": "B"},
        "B": {"Type": "Pass", "ResultPath": None, "Result": 5, "OutputPath": "$.x",
              "Next": "C"},
        "C": {"Type": "Pass", "OutputPath": None, "End": True}}}, {"a": 1}),
    "parameters": (pass_with({"literal": "$.a", "a.$": "$.a", "list": [{"b.$": "$.b[1]"}],
                              "name.$": "$$.Execution.Name", "in.$": "$$.Execution.Input.a",
                              "all.$": "$.b[*]", "slice.$": "$.b[1:]", "first.$": "$.b[0]"}),
                   {"a": "x", "b": [1, 2, 3]}),
    "negative-index": (pass_with({"v.$": "$.b[-1]"}), {"b": [1, 2, 3]}),
    "index-then-field": (pass_with({"v.$": "$.b[1].x"}), {"b": [{"x": 1}, {"x": 2}]}),
    "filter-no-match": (pass_with({"v.$": "$.b[?(@ > 5)]"}), {"b": [1, 2]}),
    "missing-input-path": (single({"Type": "Pass", "InputPath": "$.nope"}), {"a": 1}),
    "missing-parameter": (pass_with({"v.$": "$.nope"}), {"a": 1}),
    "result-path-into-string": (single({"Type": "Pass", "Result": 1, "ResultPath": "$.a.b"}),
                                {"a": "text"}),
    "wait-zero-succeed": ({"StartAt": "W", "States": {
        "W": {"Type": "Wait", "Seconds": 0, "Next": "S"},
        "S": {"Type": "Succeed", "InputPath": "$.k"}}}, {"k": {"v": 1}}),
    "wait-seconds-path": (single({"Type": "Wait", "SecondsPath": "$.s"}), {"s": 0}),
    "fail": (single({"Type": "Fail", "Error": "Custom.Error", "Cause": "because"}), {}),
    "fail-paths": (single({"Type": "Fail", "ErrorPath": "$.e", "CausePath": "$.c"}),
                   {"e": "E", "c": "C"}),
    "fail-bare": (single({"Type": "Fail"}), {}),
    "no-choice-matched": ({"StartAt": "C", "States": {
        "C": {"Type": "Choice", "Choices": [{"Variable": "$.a", "IsNull": True,
                                             "Next": "E"}]},
        "E": {"Type": "Succeed"}}}, {"a": 1}),
    "map": (single({"Type": "Map", "ItemsPath": "$.items", "MaxConcurrency": 2,
                    "ItemSelector": {"v.$": "$$.Map.Item.Value", "i.$": "$$.Map.Item.Index",
                                     "d.$": "$.d"},
                    "ItemProcessor": {"ProcessorConfig": {"Mode": "INLINE"}, "StartAt": "P",
                                      "States": {"P": {"Type": "Pass", "Parameters": {
                                          "s.$": "States.Format('{}:{}', $.i, $.v)",
                                          "d.$": "$.d"}, "End": True}}},
                    "ResultSelector": {"n.$": "States.ArrayLength($)", "all.$": "$"},
                    "ResultPath": "$.out"}), {"items": ["a", "b", "c"], "d": 1}),
    "map-legacy": (single({"Type": "Map", "Parameters": {"v.$": "$$.Map.Item.Value"},
                           "Iterator": INNER, "OutputPath": "$[1]"}), [1, 2]),
    "map-empty": (single({"Type": "Map", "ItemProcessor": INNER}), []),
    "map-fail-caught": ({"StartAt": "M", "States": {
        "M": {"Type": "Map", "ItemsPath": "$.i", "ItemProcessor": {"StartAt": "F", "States": {
            "F": {"Type": "Fail", "Error": "ItemFailed", "Cause": "bad item"}}},
              "Catch": [{"ErrorEquals": ["ItemFailed"], "ResultPath": "$.e", "Next": "H"}],
              "End": True},
        "H": {"Type": "Pass", "End": True}}}, {"i": [1]}),
    "parallel": (single({"Type": "Parallel", "Parameters": {"x.$": "$.x"}, "Branches": [
        {"StartAt": "A", "States": {"A": {"Type": "Pass", "Result": "a", "End": True}}},
        {"StartAt": "B", "States": {"B": {"Type": "Pass", "End": True}}}],
        "ResultSelector": {"first.$": "$[0]", "second.$": "$[1]"}, "ResultPath": "$.r"}),
        {"x": 3, "y": 4}),
    "parallel-fail-caught": ({"StartAt": "P", "States": {
        "P": {"Type": "Parallel", "Branches": [{"StartAt": "F", "States": {
            "F": {"Type": "Fail", "Error": "E1"}}}],
              "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.err",
                         "Next": "S"}], "End": True},
        "S": {"Type": "Succeed"}}}, {"a": 1}),
    "math-random-seeded": (pass_with({"v.$": "States.MathRandom(1, 1000, 7)"}), {}),
    "uuid-shape": (pass_with({"v.$": "States.ArrayLength(States.StringSplit(States.UUID(), "
                                     "'-'))"}), {}),
}


def _first_reason(text: str, reasons: dict[str, str]) -> str | None:
    return next((why for marker, why in reasons.items() if marker in text), None)


for i, (rule, _) in enumerate(test_choice.CASES):
    CASES[f"choice-{i}"] = (test_choice.machine(rule), test_choice.DATA)
    reason = _first_reason(json.dumps(rule), CHOICE_DIFFERS)
    if reason:
        MOTO_DIFFERS[f"choice-{i}"] = reason
for i, (expression, _) in enumerate(test_intrinsics.CASES):
    CASES[f"intrinsic-{i}"] = (pass_with({"v.$": expression}), test_intrinsics.DATA)
    reason = _first_reason(expression, INTRINSIC_DIFFERS)
    if reason:
        MOTO_DIFFERS[f"intrinsic-{i}"] = reason
for i, expression in enumerate(test_intrinsics.FAILURES):
    CASES[f"intrinsic-failure-{i}"] = (pass_with({"v.$": expression}), test_intrinsics.DATA)
    MOTO_DIFFERS[f"intrinsic-failure-{i}"] = (
        "moto reports failing intrinsics as States.Runtime, not States.IntrinsicFailure")


@pytest.mark.parametrize("case", list(CASES))
async def test_same_outcome_as_moto(sfn: Any, case: str) -> None:
    if case in MOTO_DIFFERS:
        pytest.skip(MOTO_DIFFERS[case])
    definition, data = CASES[case]
    ours = await run(definition, data, execution_name=EXECUTION_NAME)
    theirs = run_in_moto(sfn, definition, data, f"parity-{case}".replace(".", "-")[:80])
    assert (ours.status, ours.output, ours.error) == theirs
