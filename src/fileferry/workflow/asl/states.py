"""The compiled states: plain data, checked at load time, run by the interpreter.

Path fields hold ``None`` when the definition wrote JSON ``null``: for
``InputPath``/``OutputPath`` that means ``{}``, for ``ResultPath`` "keep the raw
input, discard the result".
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from fileferry.workflow.asl.choice import ChoiceRule
from fileferry.workflow.asl.paths import ROOT, JsonPath, ReferencePath
from fileferry.workflow.asl.retry import Catcher, Retrier
from fileferry.workflow.asl.templates import Expression, Template

__all__ = [
    "Block",
    "ChoiceState",
    "FailState",
    "MapState",
    "ParallelState",
    "PassState",
    "State",
    "SucceedState",
    "TaskState",
    "WaitState",
]

INLINE_MAP_CONCURRENCY = 40  # AWS runs at most 40 inline iterations at once


@dataclass(frozen=True, kw_only=True)
class State:
    """Fields every state may carry (unused ones keep their defaults)."""

    name: str
    type: str
    next: str | None = None  # None: End (or a terminal state)
    input_path: JsonPath | None = ROOT
    output_path: JsonPath | None = ROOT
    retry: tuple[Retrier, ...] = ()
    catch: tuple[Catcher, ...] = ()


@dataclass(frozen=True)
class Block:
    """A set of states with a start: the machine itself, a Map processor or a Parallel branch."""

    start_at: str
    states: Mapping[str, State]


@dataclass(frozen=True, kw_only=True)
class PassState(State):
    parameters: Template | None = None
    result: Any = None
    has_result: bool = False
    result_path: ReferencePath | None = field(default_factory=lambda: ReferencePath("$", ()))


@dataclass(frozen=True, kw_only=True)
class TaskState(State):
    resource: str
    parameters: Template | None = None
    result_selector: Template | None = None
    result_path: ReferencePath | None = field(default_factory=lambda: ReferencePath("$", ()))
    timeout_seconds: int | None = None
    timeout_seconds_path: JsonPath | None = None
    callback: bool = False  # Resource ends in .waitForTaskToken


@dataclass(frozen=True, kw_only=True)
class ChoiceState(State):
    choices: tuple[ChoiceRule, ...]
    default: str | None = None


@dataclass(frozen=True, kw_only=True)
class WaitState(State):
    seconds: int | None = None
    seconds_path: JsonPath | None = None
    timestamp: datetime | None = None
    timestamp_path: JsonPath | None = None


@dataclass(frozen=True, kw_only=True)
class SucceedState(State):
    pass


@dataclass(frozen=True, kw_only=True)
class FailState(State):
    error: str | None = None
    cause: str | None = None
    error_path: Expression | None = None
    cause_path: Expression | None = None


@dataclass(frozen=True, kw_only=True)
class MapState(State):
    processor: Block
    items_path: JsonPath = ROOT
    item_selector: Template | None = None
    max_concurrency: int = 0
    max_concurrency_path: JsonPath | None = None
    result_selector: Template | None = None
    result_path: ReferencePath | None = field(default_factory=lambda: ReferencePath("$", ()))


@dataclass(frozen=True, kw_only=True)
class ParallelState(State):
    branches: tuple[Block, ...]
    parameters: Template | None = None
    result_selector: Template | None = None
    result_path: ReferencePath | None = field(default_factory=lambda: ReferencePath("$", ()))
