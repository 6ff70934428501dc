"""Running a StateMachine: the state loop, Retry/Catch, checkpoints, timeout and cancel."""

from __future__ import annotations

import asyncio
import random as _random
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

from fileferry.workflow.asl.basic import (
    Outcome,
    run_choice,
    run_fail,
    run_pass,
    run_succeed,
    run_task,
    run_wait,
)
from fileferry.workflow.asl.callbacks import Callbacks, Parked
from fileferry.workflow.asl.compound import run_map, run_parallel
from fileferry.workflow.asl.concurrency import cancel_all
from fileferry.workflow.asl.definition import StateMachine
from fileferry.workflow.asl.errors import TIMEOUT, StatesError
from fileferry.workflow.asl.journal import Checkpoint, Journal, NullJournal
from fileferry.workflow.asl.payload import check_size, normalise
from fileferry.workflow.asl.retry import find_catcher, next_delay
from fileferry.workflow.asl.runtime import Runtime, TaskInvoker, Visit, merge_result
from fileferry.workflow.asl.states import (
    Block,
    ChoiceState,
    FailState,
    MapState,
    ParallelState,
    PassState,
    State,
    SucceedState,
    TaskState,
    WaitState,
)
from fileferry.workflow.asl.timestamps import format_timestamp

__all__ = ["ExecutionResult", "execute"]

Status = Literal["SUCCEEDED", "FAILED", "ABORTED", "PARKED"]


@dataclass
class ExecutionResult:
    """How an execution ended; ``output`` only when SUCCEEDED, error/cause only when FAILED.

    PARKED: a callback task is waiting for its outcome; resume from the checkpoint later.
    """

    status: Status
    output: Any
    error: str | None
    cause: str | None


async def _dispatch(runtime: Runtime, state: State, raw: Any, visit: Visit) -> Outcome:
    if isinstance(state, TaskState):
        return await run_task(runtime, state, raw, visit)
    if isinstance(state, PassState):
        return await run_pass(runtime, state, raw, visit)
    if isinstance(state, ChoiceState):
        return await run_choice(runtime, state, raw, visit)
    if isinstance(state, WaitState):
        return await run_wait(runtime, state, raw, visit)
    if isinstance(state, SucceedState):
        return await run_succeed(runtime, state, raw, visit)
    if isinstance(state, FailState):
        return await run_fail(runtime, state, raw, visit)
    if isinstance(state, MapState):
        return await run_map(runtime, state, raw, visit, run_block)
    assert isinstance(state, ParallelState)
    return await run_parallel(runtime, state, raw, visit, run_block)


async def run_state(runtime: Runtime, state: State, raw: Any, path: str) -> Outcome:
    """One entry into ``state``: its work, retried per Retry, then caught per Catch.

    Raises the StatesError that neither Retry nor Catch handled.
    """
    journal, clock = runtime.journal, runtime.clock
    visit = Visit(path, clock())
    await journal.entered(path, state.name, raw, visit.entered)
    used = [0] * len(state.retry)
    while True:
        try:
            outcome = await _dispatch(runtime, state, raw, visit)
        except StatesError as exc:
            error = exc
        else:
            await journal.exited(path, state.name, outcome[1], clock())
            return outcome
        delay = None if error.terminal else next_delay(state.retry, used, error, runtime.random)
        if delay is None:
            break
        visit = Visit(path, visit.entered, visit.retry_count + 1)
        await journal.retrying(path, state.name, error.error, error.cause, visit.retry_count,
                               delay, clock())
        await runtime.sleep(delay)
    await journal.failed(path, state.name, error.error, error.cause, clock())
    catcher = find_catcher(state.catch, error)
    if catcher is None:
        raise error
    output = merge_result(catcher.result_path, raw, {"Error": error.error, "Cause": error.cause})
    check_size(output, f"the error output of state {state.name!r}")
    return catcher.next, output


async def run_block(runtime: Runtime, block: Block, data: Any, prefix: str) -> Any:
    """Run a Map iteration or Parallel branch from its StartAt; returns its output."""
    name: str | None = block.start_at
    while name is not None:
        state = block.states[name]
        name, data = await run_state(runtime, state, data, f"{prefix}/{name}")
    return data


async def _run_top(runtime: Runtime, block: Block, start: str, data: Any,
                   items: dict[str, dict[int, Any]]) -> Any:
    """The top-level loop: a checkpoint before every state and after the last."""
    name: str | None = start
    while name is not None:
        await runtime.journal.checkpoint(Checkpoint(name, data, items))
        items = {}
        name, data = await run_state(runtime, block.states[name], data, name)
    await runtime.journal.checkpoint(Checkpoint(None, data))
    return data


def _failed(error: StatesError) -> ExecutionResult:
    return ExecutionResult("FAILED", None, error.error or None, error.cause or None)


async def _supervise(main: asyncio.Task[Any], limit: int | None,
                     sleep: Callable[[float], Awaitable[None]],
                     cancel: asyncio.Event | None) -> ExecutionResult:
    """Wait for ``main``, the cancel event or the execution timeout, whichever comes first."""
    watchers: list[asyncio.Future[Any]] = []
    if cancel is not None:
        watchers.append(asyncio.ensure_future(cancel.wait()))
    if limit is not None:
        watchers.append(asyncio.ensure_future(sleep(limit)))
    try:
        await asyncio.wait([main, *watchers], return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped = not main.done()
        await cancel_all([main, *watchers] if stopped else watchers)
    if not stopped:
        try:
            return ExecutionResult("SUCCEEDED", main.result(), None, None)
        except StatesError as exc:
            return _failed(exc)
        except Parked:
            return ExecutionResult("PARKED", None, None, None)
    if cancel is not None and cancel.is_set():
        return ExecutionResult("ABORTED", None, None, None)
    return _failed(StatesError(TIMEOUT, f"The execution timed out after {limit} seconds"))


def _execution(machine: StateMachine, execution_id: str | None, name: str, data: Any,
               started: float) -> dict[str, Any]:
    """``$$.Execution``; the role ARN is a placeholder (nothing runs under IAM locally)."""
    return {"Id": execution_id or f"arn:aws:states:local:000000000000:execution:"
                                  f"{machine.name}:{name}",
            "Input": data, "Name": name, "StartTime": format_timestamp(started),
            "RoleArn": "arn:aws:iam::000000000000:role/fileferry-local", "RedriveCount": 0}


def _copy_items(items: dict[str, dict[int, Any]]) -> dict[str, dict[int, Any]]:
    return {path: dict(done) for path, done in items.items()}


async def execute(machine: StateMachine, input: Any, *, invoker: TaskInvoker,
                  execution_id: str | None = None, execution_name: str | None = None,
                  journal: Journal | None = None, resume: Checkpoint | None = None,
                  clock: Callable[[], float] = time.time,
                  sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                  random: Callable[[], float] = _random.random,
                  cancel: asyncio.Event | None = None,
                  callbacks: Callbacks | None = None) -> ExecutionResult:
    """Run ``machine`` on ``input`` (the execution input, also on resume) to its end.

    - ``resume`` starts at ``resume.next_state`` with ``resume.input``, skipping
      the Map iterations in ``resume.map_items``; ``next_state`` None returns
      SUCCEEDED with ``resume.input`` at once. An unknown state is a ValueError.
    - ``cancel`` set: no new state or iteration starts, running tasks are
      cancelled, and the result is ABORTED (also when set before the start).
    - ``sleep`` serves Wait, retry back-off and every timeout; ``clock`` gives
      timestamps and Wait's Timestamp; ``random`` gives FULL jitter and
      States.MathRandom without a seed.
    - ``callbacks`` serves ``.waitForTaskToken`` tasks (without it they fail with
      States.Runtime); a ``Parked`` raised by its wait gives PARKED.
    - A top-level TimeoutSeconds gives FAILED with ``States.Timeout`` (AWS
      reports TIMED_OUT). An unhandled error gives FAILED with its Error/Cause.

    Exceptions other than StatesError escaping the interpreter (a journal
    hook's, a bug) propagate to the caller.
    """
    if cancel is not None and cancel.is_set():
        return ExecutionResult("ABORTED", None, None, None)
    name = execution_name or str(uuid.uuid4())
    try:
        data = normalise(input, "the execution input")
    except StatesError as exc:
        return _failed(exc)
    runtime = Runtime(invoker, journal or NullJournal(), clock, sleep, random,
                      execution=_execution(machine, execution_id, name, data, clock()),
                      state_machine={"Id": machine.arn, "Name": machine.name},
                      callbacks=callbacks)
    start, items = machine.start_at, {}
    if resume is not None:
        if resume.next_state is None:
            return ExecutionResult("SUCCEEDED", resume.input, None, None)
        if resume.next_state not in machine.states:
            raise ValueError(f"the checkpoint resumes at {resume.next_state!r}, "
                             "which is not a top-level state of this machine")
        start, data, items = resume.next_state, resume.input, _copy_items(resume.map_items)
        runtime.resume_items = _copy_items(resume.map_items)
    main = asyncio.ensure_future(_run_top(runtime, machine.block, start, data, items))
    return await _supervise(main, machine.timeout_seconds, sleep, cancel)
