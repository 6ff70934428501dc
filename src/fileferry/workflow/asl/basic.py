"""Handlers for the states that run no sub-states: Pass, Task, Choice, Wait, Succeed, Fail.

Each takes the state, its raw input and the visit, and returns the next
state's name (None to end) and the state's output, or raises StatesError.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from fileferry.workflow.asl.choice import test
from fileferry.workflow.asl.concurrency import with_timeout
from fileferry.workflow.asl.errors import NO_CHOICE_MATCHED, RUNTIME, TIMEOUT, StatesError
from fileferry.workflow.asl.paths import Env, JsonPath, apply_path, to_json
from fileferry.workflow.asl.payload import normalise
from fileferry.workflow.asl.runtime import Runtime, Visit, invoke, merge_result, state_output
from fileferry.workflow.asl.states import (
    ChoiceState,
    FailState,
    PassState,
    SucceedState,
    TaskState,
    WaitState,
)
from fileferry.workflow.asl.templates import Expression, evaluate_expression
from fileferry.workflow.asl.timestamps import parse_timestamp

__all__ = ["run_choice", "run_fail", "run_pass", "run_succeed", "run_task", "run_wait"]

Outcome = tuple[str | None, Any]


def _effective(state: PassState | TaskState | ChoiceState | WaitState | SucceedState,
               env: Env) -> Env:
    """``env`` with its data replaced by the InputPath selection."""
    return replace(env, data=apply_path(state.input_path, env, "InputPath"))


async def run_pass(runtime: Runtime, state: PassState, raw: Any, visit: Visit) -> Outcome:
    """Result, else Parameters over the effective input, else the effective input."""
    env = runtime.env(state, visit, raw)
    here = _effective(state, env)
    if state.has_result:
        result = state.result
    elif state.parameters is not None:
        result = state.parameters.render(here)
    else:
        result = here.data
    return state.next, state_output(state, env, merge_result(state.result_path, raw, result))


def _whole_seconds(path: JsonPath, env: Env, name: str, low: int) -> int:
    value = path.get(env, name)
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not float(value).is_integer() or value < low:
        raise StatesError(RUNTIME, f"{name} {path.source} must select an integer >= {low}, "
                                   f"got {to_json(value)}")
    return int(value)


async def _callback_token(runtime: Runtime, state: TaskState, visit: Visit) -> str | None:
    if not state.callback:
        return None
    if runtime.callbacks is None:
        raise StatesError(RUNTIME, f"Task {state.name!r} waits for a task token, and this "
                                   "runner has no callback service")
    return await runtime.callbacks.token(visit.path, visit.retry_count)


async def run_task(runtime: Runtime, state: TaskState, raw: Any, visit: Visit) -> Outcome:
    """Invoke ``Resource`` with the Parameters payload, under TimeoutSeconds if set.

    The payload and result are copied through JSON, so the task shares nothing
    with the execution's data. A timeout raises ``States.Timeout``. A callback
    task (``.waitForTaskToken``) sees ``$$.Task.Token``; its result is what is
    reported for the token, and its timeout covers the wait (by the host's clock,
    so it holds across a restart).
    """
    token = await _callback_token(runtime, state, visit)
    env = runtime.env(state, visit, raw, token)
    here = _effective(state, env)
    payload = here.data if state.parameters is None else state.parameters.render(here)
    payload = normalise(payload, f"the input of task {state.name!r}")
    timeout: int | None = state.timeout_seconds
    if state.timeout_seconds_path is not None:
        timeout = _whole_seconds(state.timeout_seconds_path, here, "TimeoutSecondsPath", 1)
    call = invoke(runtime, state.resource, payload, runtime.context(state, visit, token))
    if token is not None and runtime.callbacks is not None:
        await call
        result = await runtime.callbacks.wait(token, timeout)
    else:
        result = await with_timeout(
            call, timeout, runtime.sleep,
            lambda: StatesError(TIMEOUT, f"Task {state.name!r} timed out after {timeout} "
                                         "seconds"))
    result = normalise(result, f"the result of task {state.name!r}")
    if state.result_selector is not None:
        result = state.result_selector.render(replace(env, data=result))
    return state.next, state_output(state, env, merge_result(state.result_path, raw, result))


async def run_choice(runtime: Runtime, state: ChoiceState, raw: Any, visit: Visit) -> Outcome:
    """The first matching rule's Next, else Default, else ``States.NoChoiceMatched``."""
    env = runtime.env(state, visit, raw)
    here = _effective(state, env)
    target = next((c.next for c in state.choices if test(c.rule, here)), state.default)
    if target is None:
        raise StatesError(NO_CHOICE_MATCHED, f"No Choice rule of {state.name!r} matched and "
                                             "there is no Default")
    return target, state_output(state, env, here.data)


def _wait_seconds(runtime: Runtime, state: WaitState, here: Env) -> float:
    if state.seconds is not None:
        return state.seconds
    if state.seconds_path is not None:
        return _whole_seconds(state.seconds_path, here, "SecondsPath", 0)
    moment = state.timestamp
    if state.timestamp_path is not None:
        value = state.timestamp_path.get(here, "TimestampPath")
        moment = parse_timestamp(value)
        if moment is None:
            raise StatesError(RUNTIME, f"TimestampPath {state.timestamp_path.source} selected "
                                       f"{to_json(value)}, not an RFC 3339 timestamp")
    assert moment is not None
    return moment.timestamp() - runtime.clock()


async def run_wait(runtime: Runtime, state: WaitState, raw: Any, visit: Visit) -> Outcome:
    """Sleep (with the injected sleep) for Seconds, or until Timestamp by the injected clock.

    A timestamp in the past does not wait at all.
    """
    env = runtime.env(state, visit, raw)
    here = _effective(state, env)
    delay = _wait_seconds(runtime, state, here)
    if delay > 0:
        await runtime.sleep(delay)
    return state.next, state_output(state, env, here.data)


async def run_succeed(runtime: Runtime, state: SucceedState, raw: Any, visit: Visit) -> Outcome:
    env = runtime.env(state, visit, raw)
    return None, state_output(state, env, _effective(state, env).data)


def _fail_text(expression: Expression | None, literal: str | None, env: Env,
               name: str) -> str:
    if expression is None:
        return literal or ""
    value = evaluate_expression(expression, env, name)
    if not isinstance(value, str):
        raise StatesError(RUNTIME, f"{name} must select a string, got {to_json(value)}")
    return value


async def run_fail(runtime: Runtime, state: FailState, raw: Any, visit: Visit) -> Outcome:
    """Raise the state's Error/Cause (ErrorPath/CausePath read the raw input)."""
    env = runtime.env(state, visit, raw)
    raise StatesError(_fail_text(state.error_path, state.error, env, "ErrorPath"),
                      _fail_text(state.cause_path, state.cause, env, "CausePath"))
