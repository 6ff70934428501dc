"""Helpers for the ASL tests: a fake clock/sleep, a recording journal, one-line runs."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from fileferry.workflow.asl import Checkpoint, ExecutionResult, StateMachine, execute

Invoker = Callable[[str, Any, dict[str, Any]], Awaitable[Any]]


class FakeTime:
    """A clock that only moves when ``sleep`` is awaited; every sleep is recorded."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


class RecordingJournal:
    """Keeps every hook call, and the latest checkpoint with map items folded in."""

    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []
        self.checkpoints: list[dict[str, Any]] = []
        self.latest: Checkpoint | None = None

    async def entered(self, path: str, state: str, input: Any, when: float) -> None:
        self.events.append(("entered", path, state))

    async def exited(self, path: str, state: str, output: Any, when: float) -> None:
        self.events.append(("exited", path, state))

    async def retrying(self, path: str, state: str, error: str, cause: str, attempt: int,
                       delay: float, when: float) -> None:
        self.events.append(("retrying", path, state, error, attempt, delay))

    async def failed(self, path: str, state: str, error: str, cause: str, when: float) -> None:
        self.events.append(("failed", path, state, error))

    async def checkpoint(self, cp: Checkpoint) -> None:
        self.checkpoints.append(cp.to_dict())
        self.latest = Checkpoint.from_dict(cp.to_dict())

    async def map_item_done(self, path: str, index: int, output: Any) -> None:
        self.events.append(("item", path, index))
        assert self.latest is not None
        self.latest.map_items.setdefault(path, {})[index] = output


async def no_tasks(resource: str, payload: Any, context: dict[str, Any]) -> Any:
    raise AssertionError(f"no task expected, {resource} was invoked")


async def echo(resource: str, payload: Any, context: dict[str, Any]) -> Any:
    return payload


def single(state: dict[str, Any], **top: Any) -> dict[str, Any]:
    """A machine of one state ``S`` (End added where the type needs it)."""
    if state["Type"] not in ("Choice", "Succeed", "Fail") and "Next" not in state:
        state = {**state, "End": True}
    return {"StartAt": "S", "States": {"S": state}, **top}


async def run(definition: dict[str, Any] | str, input: Any = None, *,
              invoker: Invoker = no_tasks, time: FakeTime | None = None,
              **options: Any) -> ExecutionResult:
    """Load and execute with a fake clock (nothing really sleeps)."""
    time = time or FakeTime()
    machine = StateMachine.load(definition, options.pop("substitutions", None))
    return await execute(machine, {} if input is None else input, invoker=invoker,
                         clock=time.clock, sleep=time.sleep, **options)


async def output_of(definition: dict[str, Any], input: Any = None, **options: Any) -> Any:
    """The output of a run that must succeed."""
    result = await run(definition, input, **options)
    assert result.status == "SUCCEEDED", (result.error, result.cause)
    return result.output


async def error_of(definition: dict[str, Any], input: Any = None,
                   **options: Any) -> tuple[str | None, str | None]:
    """``(Error, Cause)`` of a run that must fail."""
    result = await run(definition, input, **options)
    assert result.status == "FAILED", result
    return result.error, result.cause
