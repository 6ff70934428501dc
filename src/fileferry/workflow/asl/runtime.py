"""What every state handler shares: the injected services, the context object, the I/O tail."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any

from fileferry.workflow.asl.callbacks import Callbacks
from fileferry.workflow.asl.errors import StatesError
from fileferry.workflow.asl.journal import Journal
from fileferry.workflow.asl.paths import Env, ReferencePath, apply_path
from fileferry.workflow.asl.payload import check_size
from fileferry.workflow.asl.states import State
from fileferry.workflow.asl.timestamps import format_timestamp

__all__ = ["Runtime", "TaskInvoker", "Visit", "invoke", "merge_result", "state_output"]

TaskInvoker = Callable[[str, Any, dict[str, Any]], Awaitable[Any]]


@dataclass(frozen=True)
class Visit:
    """One entry into a state: where it is, when it was entered, how many retries so far."""

    path: str
    entered: float
    retry_count: int = 0


@dataclass
class Runtime:
    """The services and constants of one execution."""

    invoker: TaskInvoker
    journal: Journal
    clock: Callable[[], float]
    sleep: Callable[[float], Awaitable[None]]
    random: Callable[[], float]
    execution: dict[str, Any]  # $$.Execution
    state_machine: dict[str, Any]  # $$.StateMachine
    resume_items: dict[str, dict[int, Any]] = field(default_factory=dict)
    callbacks: Callbacks | None = None

    def context(self, state: State, visit: Visit, token: str | None = None) -> dict[str, Any]:
        """A fresh context object for ``state`` (no ``Map``: only ItemSelector sees it);
        ``token`` adds ``Task.Token`` (callback tasks)."""
        context: dict[str, Any] = {
            "Execution": dict(self.execution),
            "StateMachine": dict(self.state_machine),
            "State": {"Name": state.name, "EnteredTime": format_timestamp(visit.entered),
                      "RetryCount": visit.retry_count},
        }
        if token is not None:
            context["Task"] = {"Token": token}
        return context

    def env(self, state: State, visit: Visit, data: Any, token: str | None = None) -> Env:
        return Env(data, self.context(state, visit, token), self.random)


def merge_result(result_path: ReferencePath | None, raw: Any, result: Any) -> Any:
    """``ResultPath``: None (null) keeps ``raw``; otherwise ``result`` placed into a copy of it."""
    return raw if result_path is None else result_path.merge(raw, result)


def state_output(state: State, env: Env, merged: Any) -> Any:
    """``OutputPath`` over the merged result; the output is checked against the size limit."""
    output = apply_path(state.output_path, replace(env, data=merged), "OutputPath")
    check_size(output, f"the output of state {state.name!r}")
    return output


async def invoke(runtime: Runtime, resource: str, payload: Any, context: dict[str, Any]) -> Any:
    """Call the task; any exception but StatesError becomes ``{Error: type name, Cause: str}``."""
    try:
        return await runtime.invoker(resource, payload, context)
    except StatesError:
        raise
    except Exception as exc:
        raise StatesError(type(exc).__name__, str(exc)) from exc
