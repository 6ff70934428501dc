"""Loading: substitutions, and validation errors that name the offending field."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from fileferry.workflow.asl import AslDefinitionError, StateMachine
from fileferry.workflow.asl.states import MapState, TaskState
from tests.workflow.asl.support import single

TASK = {"Type": "Task", "Resource": "fn"}
INNER = {"StartAt": "I", "States": {"I": {"Type": "Pass", "End": True}}}


def task(**extra: Any) -> dict[str, Any]:
    return single({**TASK, **extra})


def with_retry(**retrier: Any) -> dict[str, Any]:
    return task(Retry=[{"ErrorEquals": ["X"], **retrier}])


INVALID: list[tuple[Any, str]] = [
    (single({"Type": "Bogus"}), "States.S.Type: 'Bogus' is not supported"),
    ({"StartAt": "S", "States": {"S": {"End": True}}}, "States.S.Type: is required"),
    (with_retry(BackoffRate=0.5), "States.S.Retry[0].BackoffRate: must be >= 1.0"),
    (with_retry(MaxAttempts=-1), "States.S.Retry[0].MaxAttempts: must be between 0"),
    (with_retry(IntervalSeconds=0), "States.S.Retry[0].IntervalSeconds: must be between 1"),
    (with_retry(MaxDelaySeconds=0), "States.S.Retry[0].MaxDelaySeconds: must be between 1"),
    (with_retry(JitterStrategy="HALF"), "States.S.Retry[0].JitterStrategy: must be FULL or"),
    (with_retry(Bogus=1), "States.S.Retry[0].Bogus: unknown field"),
    (task(Retry=[{"ErrorEquals": []}]), "States.S.Retry[0].ErrorEquals: must be a non-empty"),
    (task(Retry=[{"ErrorEquals": ["States.ALL"]}, {"ErrorEquals": ["X"]}]),
     "States.S.Retry[0].ErrorEquals[0]: States.ALL must be alone in the last"),
    (task(Catch=[{"ErrorEquals": ["X", "States.ALL"], "Next": "S"}]),
     "States.S.Catch[0].ErrorEquals[1]: States.ALL must be alone"),
    (task(Retry=[{"ErrorEquals": ["States.Oops"]}]),
     "States.S.Retry[0].ErrorEquals[0]: 'States.Oops' is not an ASL error name"),
    (task(Catch=[{"ErrorEquals": ["X"]}]), "States.S.Catch[0].Next: is required"),
    (task(Catch=[{"ErrorEquals": ["X"], "Next": "Nope"}]),
     "States.S.Catch[0].Next: no state named 'Nope'"),
    (task(Credentials={"RoleArn": "r"}), "States.S.Credentials: is not supported"),
    (task(HeartbeatSeconds=5), "States.S.HeartbeatSeconds: is not supported"),
    (task(Assign={"x": 1}), "States.S.Assign: is not supported"),
    (task(Arguments={"x": 1}), "States.S.Arguments: is not supported"),
    (task(QueryLanguage="JSONata"), "States.S.QueryLanguage: 'JSONata' is not supported"),
    (single({"Type": "Task"}), "States.S.Resource: is required"),
    (task(TimeoutSeconds=0), "States.S.TimeoutSeconds: must be between 1"),
    (task(TimeoutSeconds=5, TimeoutSecondsPath="$.t"),
     "States.S.TimeoutSecondsPath: cannot be used together with TimeoutSeconds"),
    (task(Foo=1), "States.S.Foo: unknown field"),
    (task(InputPath="a.b"), "States.S.InputPath: 'a.b' is not a JSONPath"),
    (task(OutputPath="$.a[?(@.b >"), "States.S.OutputPath: '$.a[?(@.b >' is not a valid"),
    (task(ResultPath="$.a[*]"), "States.S.ResultPath: '$.a[*]' must be a Reference Path"),
    (task(ResultPath="$$.Execution"), "States.S.ResultPath: '$$.Execution' must be a Ref"),
    (task(Parameters={"x.$": "$foo"}), "States.S.Parameters.x.$: '$foo' looks like a variable"),
    (task(Parameters={"x.$": 3}), "States.S.Parameters.x.$: must be a path or an intrinsic"),
    (task(Parameters={"a": 1, "a.$": "$"}), "States.S.Parameters.a.$: duplicates the field"),
    (task(Parameters={"n": {"x.$": "States.Nope()"}}),
     "States.S.Parameters.n.x.$: unknown intrinsic function"),
    (task(ResultSelector={"x.$": "States.ArrayLength($.a, $.b)"}),
     "States.S.ResultSelector.x.$: States.ArrayLength takes 1 argument(s), got 2"),
    (task(Parameters={"x.$": "States.Format('a', $.b"}),
     "States.S.Parameters.x.$: expected ',' or ')'"),
    (task(Parameters={"x.$": "States.Format('a)"}), "States.S.Parameters.x.$: unterminated"),
    (task(Parameters={"x.$": "States.Array(" * 11 + ")" * 11}),
     "States.S.Parameters.x.$: more than 10 nested"),
    ({"StartAt": "S", "States": {"S": {**TASK, "Next": "T", "End": True},
                                 "T": {"Type": "Succeed"}}},
     "States.S.Next: exactly one of Next or End"),
    ({"StartAt": "S", "States": {"S": {**TASK, "End": False}}}, "States.S.End: must be true"),
    ({"StartAt": "S", "States": {"S": TASK}}, "States.S.Next: exactly one of Next or End"),
    ({"StartAt": "S", "States": {"S": {**TASK, "Next": "Nope"}}},
     "States.S.Next: no state named 'Nope'"),
    ({"StartAt": "Nope", "States": {"S": {"Type": "Succeed"}}}, "StartAt: no state named"),
    ({"StartAt": "S", "States": {"S": {"Type": "Succeed"}, "T": {"Type": "Succeed"}}},
     "States.T: is not reachable from StartAt"),
    ({"StartAt": "S", "States": {}}, "States: must be a non-empty object"),
    ({"States": {"S": {"Type": "Succeed"}}}, "StartAt: is required"),
    (single({"Type": "Succeed"}, QueryLanguage="JSONata"), "QueryLanguage: 'JSONata' is not"),
    (single({"Type": "Succeed"}, TimeoutSeconds=0), "TimeoutSeconds: must be between 1"),
    (single({"Type": "Succeed"}, Extra=1), "Extra: unknown field"),
    ({"StartAt": "x" * 81, "States": {"x" * 81: {"Type": "Succeed"}}},
     "States." + "x" * 81 + ": state names are at most 80 characters"),
    (single({"Type": "Succeed", "Next": "S"}), "States.S.Next: unknown field"),
    (single({"Type": "Choice", "Choices": [{"Variable": "$.a", "IsNull": True}]}),
     "States.S.Choices[0].Next: is required"),
    (single({"Type": "Choice", "Choices": [{"Variable": "$.a", "IsNull": True, "Next": "S"}],
             "End": True}), "States.S.End: a Choice state moves on through Choices"),
    (single({"Type": "Choice", "Choices": [{"Variable": "$.a", "StringEquals": 1,
                                            "Next": "S"}]}),
     "States.S.Choices[0].StringEquals: must be a string"),
    (single({"Type": "Choice", "Choices": [{"Not": {"Variable": "$.a", "IsNull": True,
                                                    "Next": "S"}, "Next": "S"}]}),
     "States.S.Choices[0].Not.Next: is allowed only in top-level choice rules"),
    (single({"Type": "Choice", "Choices": [{"Variable": "$.a", "Next": "S"}]}),
     "States.S.Choices[0].Variable: each rule needs exactly one comparison operator"),
    (single({"Type": "Choice", "Choices": [{"Variable": "$.a", "IsNull": True,
                                            "IsString": True, "Next": "S"}]}),
     "States.S.Choices[0].IsString: each rule needs exactly one"),
    (single({"Type": "Choice", "Choices": [{"And": [{"Variable": "$.a",
                                                     "TimestampEquals": "yesterday"}],
                                            "Next": "S"}]}),
     "States.S.Choices[0].And[0].TimestampEquals: must be a timestamp"),
    (single({"Type": "Choice", "Choices": [{"Variable": "$.a", "NumericEqualsPath": 3,
                                            "Next": "S"}]}),
     "States.S.Choices[0].NumericEqualsPath: 3 is not a JSONPath"),
    (single({"Type": "Choice", "Choices": [{"Variable": "$.a", "BooleanEquals": True,
                                            "Next": "Nope"}]}),
     "States.S.Choices[0].Next: no state named 'Nope'"),
    (single({"Type": "Wait"}), "States.S.Seconds: exactly one of Seconds"),
    (single({"Type": "Wait", "Seconds": 1, "SecondsPath": "$.s"}),
     "States.S.Seconds: exactly one of Seconds"),
    (single({"Type": "Wait", "Timestamp": "2024-01-01 10:00:00"}),
     "States.S.Timestamp: '2024-01-01 10:00:00' is not an RFC 3339 timestamp"),
    (single({"Type": "Fail", "Error": "E", "ErrorPath": "$.e"}),
     "States.S.ErrorPath: cannot be used together with Error"),
    (single({"Type": "Fail", "InputPath": "$"}), "States.S.InputPath: unknown field"),
    (single({"Type": "Map", "ItemProcessor": INNER, "ItemReader": {}}),
     "States.S.ItemReader: is not supported by the local interpreter (Distributed Map)"),
    (single({"Type": "Map", "ItemProcessor": INNER, "ToleratedFailureCount": 1}),
     "States.S.ToleratedFailureCount: is not supported"),
    (single({"Type": "Map", "ItemProcessor": {**INNER, "ProcessorConfig": {
        "Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"}}}),
     "States.S.ItemProcessor.ProcessorConfig.Mode: 'DISTRIBUTED' is not supported"),
    (single({"Type": "Map", "ItemProcessor": {**INNER, "States": {
        "I": {"Type": "Bogus"}}}}), "States.S.ItemProcessor.States.I.Type: 'Bogus'"),
    (single({"Type": "Map", "Iterator": {**INNER, "States": {
        "I": {"Type": "Pass", "Next": "Out"}}}}),
     "States.S.Iterator.States.I.Next: no state named 'Out'"),
    (single({"Type": "Map"}), "States.S.ItemProcessor: is required"),
    (single({"Type": "Map", "ItemProcessor": INNER, "Iterator": INNER}),
     "States.S.Iterator: cannot be used together with ItemProcessor"),
    (single({"Type": "Map", "ItemProcessor": INNER, "ItemSelector": {}, "Parameters": {}}),
     "States.S.Parameters: cannot be used together with ItemSelector"),
    (single({"Type": "Map", "ItemProcessor": INNER, "ItemsPath": "$.a[*]"}),
     "States.S.ItemsPath: must be a Reference Path"),
    (single({"Type": "Map", "ItemProcessor": INNER, "MaxConcurrency": -1}),
     "States.S.MaxConcurrency: must be between 0"),
    (single({"Type": "Parallel", "Branches": []}), "States.S.Branches: must be a non-empty"),
    (single({"Type": "Parallel", "Branches": [INNER, {"StartAt": "X", "States": {
        "X": {"Type": "Task", "Resource": "r", "End": True, "Credentials": {}}}}]}),
     "States.S.Branches[1].States.X.Credentials: is not supported"),
    ("{not json", "definition: not valid JSON"),
]


@pytest.mark.parametrize(("definition", "message"), INVALID,
                         ids=[m.split(":")[0] + f"#{i}" for i, (_, m) in enumerate(INVALID)])
def test_invalid_definitions_name_the_field(definition: Any, message: str) -> None:
    with pytest.raises(AslDefinitionError) as caught:
        StateMachine.load(definition)
    assert str(caught.value).startswith(message), str(caught.value)


def test_error_is_a_value_error() -> None:
    assert issubclass(AslDefinitionError, ValueError)


def test_substitutions_are_textual_and_type_aware() -> None:
    text = json.dumps(task(Resource="${CopyFunction}")).replace('"End": true',
                                                               '"End": true, "TimeoutSeconds": 0')
    text = text.replace('"TimeoutSeconds": 0', '"TimeoutSeconds": ${Timeout}')
    machine = StateMachine.load(text, {"CopyFunction": "fileferry:Copy", "Timeout": "30"})
    state = machine.states["S"]
    assert isinstance(state, TaskState)
    assert (state.resource, state.timeout_seconds) == ("fileferry:Copy", 30)


def test_unknown_placeholder_is_an_error() -> None:
    with pytest.raises(AslDefinitionError, match=r"no value for the placeholder \$\{Missing\}"):
        StateMachine.load(task(Resource="${Missing}"), {"Other": "x"})


def test_dict_definition_is_substituted_without_being_modified() -> None:
    definition = task(Resource="${Fn}", Comment="see ${...} and ${Fn}")
    before = copy.deepcopy(definition)
    machine = StateMachine.load(definition, {"Fn": "local:fn"})
    assert definition == before
    assert machine.definition["States"]["S"]["Resource"] == "local:fn"
    assert machine.definition["States"]["S"]["Comment"] == "see ${...} and local:fn"


def test_loaded_machine_exposes_its_shape() -> None:
    machine = StateMachine.load({
        "Comment": "c", "Version": "1.0", "TimeoutSeconds": 60, "QueryLanguage": "JSONPath",
        "StartAt": "M", "States": {"M": {"Type": "Map", "ItemProcessor": {
            "ProcessorConfig": {"Mode": "INLINE"}, **INNER}, "MaxConcurrency": 2,
            "End": True}}}, name="Demo")
    assert (machine.name, machine.start_at, machine.timeout_seconds) == ("Demo", "M", 60)
    state = machine.states["M"]
    assert isinstance(state, MapState) and state.max_concurrency == 2
    assert machine.arn.endswith(":stateMachine:Demo")


def test_the_project_workflow_loads() -> None:
    from fileferry.workflow.registry import definition_text, local_substitutions

    machine = StateMachine.load(definition_text(), local_substitutions())
    assert machine.start_at in machine.states
