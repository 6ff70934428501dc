"""Retry and Catch: matching order, per-retrier counters, back-off delays, task timeouts."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from fileferry.workflow.asl import TaskFailed
from tests.workflow.asl.support import FakeTime, RecordingJournal, error_of, output_of, run


class SourceNotFound(Exception):
    """Named like FileFerry's errors: the class name is the ASL error name."""


class Script:
    """An invoker that raises (or returns) the scripted outcomes in order, then returns "ok"."""

    def __init__(self, *outcomes: Any) -> None:
        self.outcomes = list(outcomes)
        self.calls = 0
        self.retry_counts: list[int] = []

    async def __call__(self, resource: str, payload: Any, context: dict[str, Any]) -> Any:
        self.calls += 1
        self.retry_counts.append(context["State"]["RetryCount"])
        outcome = self.outcomes.pop(0) if self.outcomes else "ok"
        if isinstance(outcome, str) and outcome != "ok":
            raise TaskFailed(outcome, f"cause of {outcome}")
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome


def machine(retry: list[dict[str, Any]] | None = None,
            catch: list[dict[str, Any]] | None = None, **task: Any) -> dict[str, Any]:
    state: dict[str, Any] = {"Type": "Task", "Resource": "fn", "End": True, **task}
    if retry is not None:
        state["Retry"] = retry
    if catch is not None:
        state["Catch"] = catch
    targets = {c["Next"] for c in catch or []}
    extra = {"Handler": {"Type": "Pass", "End": True},
             "Other": {"Type": "Pass", "Result": "other", "End": True}}
    # unreachable states are a definition error, so add only the catch targets
    return {"StartAt": "T", "States": {
        "T": state, **{name: s for name, s in extra.items() if name in targets}}}


def catch_all(**extra: Any) -> list[dict[str, Any]]:
    return [{"ErrorEquals": ["States.ALL"], "Next": "Handler", **extra}]


async def test_retry_until_success_with_backoff_and_retry_count() -> None:
    script, time, journal = Script("Flaky", "Flaky"), FakeTime(), RecordingJournal()
    definition = machine([{"ErrorEquals": ["Flaky"], "IntervalSeconds": 2, "BackoffRate": 3}])
    result = await run(definition, {}, invoker=script, time=time, journal=journal)
    assert (result.status, result.output) == ("SUCCEEDED", "ok")
    assert time.sleeps == [2, 6]
    assert script.retry_counts == [0, 1, 2]
    retrying = [e for e in journal.events if e[0] == "retrying"]
    assert retrying == [("retrying", "T", "T", "Flaky", 1, 2.0),
                        ("retrying", "T", "T", "Flaky", 2, 6.0)]


async def test_max_delay_caps_the_backoff() -> None:
    script, time = Script(*["E"] * 4), FakeTime()
    definition = machine([{"ErrorEquals": ["E"], "IntervalSeconds": 1, "BackoffRate": 10,
                           "MaxAttempts": 4, "MaxDelaySeconds": 50}])
    assert (await run(definition, {}, invoker=script, time=time)).status == "SUCCEEDED"
    assert time.sleeps == [1, 10, 50, 50]


async def test_full_jitter_draws_from_the_injected_random() -> None:
    script, time = Script("E", "E", "E"), FakeTime()
    definition = machine([{"ErrorEquals": ["E"], "JitterStrategy": "FULL",
                           "MaxDelaySeconds": 3}])
    await run(definition, {}, invoker=script, time=time, random=lambda: 0.25)
    assert time.sleeps == [0.25, 0.5, 0.75]  # 0.25 x min(1, 2, 4 capped to 3)


async def test_defaults_are_one_second_three_attempts_rate_two() -> None:
    script, time = Script(*["E"] * 5), FakeTime()
    error, _ = await error_of(machine([{"ErrorEquals": ["E"]}]), {}, invoker=script, time=time)
    assert error == "E" and time.sleeps == [1, 2, 4] and script.calls == 4


async def test_max_attempts_zero_never_retries() -> None:
    script = Script("E")
    out = await output_of(machine([{"ErrorEquals": ["E"], "MaxAttempts": 0}], catch_all()),
                          {}, invoker=script)
    assert out["Error"] == "E" and script.calls == 1


async def test_first_matching_retrier_decides_even_when_exhausted() -> None:
    script = Script(*["A"] * 10)
    definition = machine([{"ErrorEquals": ["A"], "MaxAttempts": 1},
                          {"ErrorEquals": ["States.ALL"], "MaxAttempts": 5}])
    error, cause = await error_of(definition, {}, invoker=script)
    assert (error, cause, script.calls) == ("A", "cause of A", 2)


async def test_aws_error_a_error_b_example() -> None:
    """One retrier on [ErrorA, ErrorB], MaxAttempts 2: A, B, then B again goes to Catch."""
    script = Script("ErrorA", "ErrorB", "ErrorB")
    definition = machine([{"ErrorEquals": ["ErrorA", "ErrorB"], "MaxAttempts": 2}],
                         [{"ErrorEquals": ["ErrorB"], "Next": "Handler", "ResultPath": "$.e"}])
    out = await output_of(definition, {"in": 1}, invoker=script)
    assert out == {"in": 1, "e": {"Error": "ErrorB", "Cause": "cause of ErrorB"}}
    assert script.calls == 3


async def test_each_retrier_counts_its_own_attempts() -> None:
    script = Script("A", "B", "A", "B")
    definition = machine([{"ErrorEquals": ["A"], "MaxAttempts": 2},
                          {"ErrorEquals": ["B"], "MaxAttempts": 2}])
    assert await output_of(definition, {}, invoker=script) == "ok"
    assert script.calls == 5


async def test_counters_reset_when_the_state_is_entered_again() -> None:
    script = Script("E", "ok", "E", "ok")
    definition = {"StartAt": "T", "States": {
        "T": {"Type": "Task", "Resource": "fn", "ResultPath": "$.r", "Next": "Again",
              "Retry": [{"ErrorEquals": ["E"], "MaxAttempts": 1}]},
        "Again": {"Type": "Choice", "Default": "Done", "Choices": [
            {"Variable": "$.loops", "NumericLessThan": 1, "Next": "Count"}]},
        "Count": {"Type": "Pass", "Result": 1, "ResultPath": "$.loops", "Next": "T"},
        "Done": {"Type": "Succeed"}}}
    assert await output_of(definition, {"loops": 0}, invoker=script) == {"loops": 1, "r": "ok"}
    assert script.calls == 4


async def test_catchers_are_tried_in_order_and_result_path_variants() -> None:
    catch = [{"ErrorEquals": ["Other"], "Next": "Other"},
             {"ErrorEquals": ["E", "X"], "Next": "Handler", "ResultPath": "$.err"},
             {"ErrorEquals": ["States.ALL"], "Next": "Other"}]
    out = await output_of(machine(None, catch), {"in": 1}, invoker=Script("E"))
    assert out == {"in": 1, "err": {"Error": "E", "Cause": "cause of E"}}
    out = await output_of(machine(None, catch_all()), {"in": 1}, invoker=Script("E"))
    assert out == {"Error": "E", "Cause": "cause of E"}
    out = await output_of(machine(None, catch_all(ResultPath=None)), {"in": 1},
                          invoker=Script("E"))
    assert out == {"in": 1}


async def test_catch_skips_result_selector_and_output_path() -> None:
    definition = machine(None, catch_all(ResultPath="$.e"), InputPath="$.sub",
                         ResultSelector={"x.$": "$.nope"}, OutputPath="$.nope")
    out = await output_of(definition, {"sub": {"a": 1}, "k": 2}, invoker=Script("E"))
    assert out == {"sub": {"a": 1}, "k": 2, "e": {"Error": "E", "Cause": "cause of E"}}


async def test_exceptions_are_named_by_their_class() -> None:
    script = Script(SourceNotFound("s3://b/k does not exist"))
    out = await output_of(machine(None, [{"ErrorEquals": ["SourceNotFound"],
                                          "Next": "Handler"}]), {}, invoker=script)
    assert out == {"Error": "SourceNotFound", "Cause": "s3://b/k does not exist"}


async def test_task_failed_matches_all_but_timeout() -> None:
    catch = [{"ErrorEquals": ["States.TaskFailed"], "Next": "Handler"},
             {"ErrorEquals": ["States.Timeout"], "Next": "Other"}]
    out = await output_of(machine(None, catch), {}, invoker=Script("Custom"))
    assert out["Error"] == "Custom"

    async def hangs(resource: str, payload: Any, context: dict[str, Any]) -> Any:
        await asyncio.Event().wait()

    assert await output_of(machine(None, catch, TimeoutSeconds=5), {}, invoker=hangs) == "other"


async def test_task_timeout_cancels_the_task_and_is_retriable() -> None:
    cancelled: list[int] = []

    async def hangs(resource: str, payload: Any, context: dict[str, Any]) -> Any:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.append(context["State"]["RetryCount"])
            raise

    time = FakeTime()
    definition = machine([{"ErrorEquals": ["States.Timeout"], "MaxAttempts": 1}],
                         TimeoutSecondsPath="$.limit")
    error, cause = await error_of(definition, {"limit": 30}, invoker=hangs, time=time)
    assert error == "States.Timeout" and cause and "30 seconds" in cause
    assert cancelled == [0, 1]
    assert time.sleeps == [30, 1, 30]  # timeout, back-off, timeout


async def test_a_task_finishing_in_time_is_not_timed_out() -> None:
    assert await output_of(machine(None, None, TimeoutSeconds=1), {}, invoker=Script()) == "ok"


@pytest.mark.parametrize("limit", [0, "5", 1.5])
async def test_bad_timeout_seconds_path_is_runtime(limit: Any) -> None:
    definition = machine(None, catch_all(), TimeoutSecondsPath="$.limit")
    assert (await error_of(definition, {"limit": limit}, invoker=Script()))[0] \
        == "States.Runtime"


async def test_journal_records_failed_before_catch() -> None:
    journal = RecordingJournal()
    await output_of(machine(None, catch_all()), {}, invoker=Script("E"), journal=journal)
    assert journal.events == [("entered", "T", "T"), ("failed", "T", "T", "E"),
                              ("entered", "Handler", "Handler"),
                              ("exited", "Handler", "Handler")]
