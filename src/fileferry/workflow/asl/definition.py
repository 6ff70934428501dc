"""Loading a definition: ``${Name}`` substitution, parsing and validation.

Everything that can be checked before running is checked here, and every
AslDefinitionError starts with the dotted name of the offending field, such as
``States.Copy.Retry[0].BackoffRate: must be >= 1.0``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from fileferry.workflow.asl.choice import parse_choice
from fileferry.workflow.asl.errors import AslDefinitionError
from fileferry.workflow.asl.fields import MISSING, Fields
from fileferry.workflow.asl.retry import parse_catch, parse_retry
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
from fileferry.workflow.asl.templates import Template, compile_expression
from fileferry.workflow.asl.timestamps import parse_timestamp

__all__ = ["StateMachine", "substitute"]

MAX_STATE_NAME = 80
_PLACEHOLDER = re.compile(r"\$\{([A-Za-z0-9_]+)\}")  # names as CloudFormation keys allow


def substitute(text: str, substitutions: Mapping[str, str]) -> str:
    """Replace every ``${Name}`` in ``text``; an unknown name is an AslDefinitionError.

    Only letters, digits and ``_`` form a name, so text such as ``${...}`` in a
    Comment is left alone.
    """
    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in substitutions:
            raise AslDefinitionError(f"DefinitionSubstitutions: no value for the placeholder "
                                     f"${{{name}}}")
        return str(substitutions[name])

    return _PLACEHOLDER.sub(replace, text)


def _substitute_tree(node: Any, substitutions: Mapping[str, str]) -> Any:
    if isinstance(node, str):
        return substitute(node, substitutions)
    if isinstance(node, list):
        return [_substitute_tree(item, substitutions) for item in node]
    if isinstance(node, dict):
        return {substitute(key, substitutions): _substitute_tree(value, substitutions)
                for key, value in node.items()}
    return node


def _template(fields: Fields, key: str) -> Template | None:
    value = fields.get(key)
    return None if value is MISSING else Template.compile(value, fields.at(key))


def _common(fields: Fields, name: str, *, io: bool = True,
            transitions: bool = True) -> dict[str, Any]:
    """Type, Comment, QueryLanguage and, when the type has them, the paths and Next/End."""
    common: dict[str, Any] = {"name": name, "type": fields.get("Type")}
    fields.get("Comment")
    language = fields.get("QueryLanguage")
    if language not in (MISSING, "JSONPath"):
        raise fields.error("QueryLanguage", f"{language!r} is not supported (only JSONPath)")
    if io:
        common.update(input_path=fields.path("InputPath"), output_path=fields.path("OutputPath"))
    if transitions:
        target, end = fields.string("Next"), fields.get("End")
        if end not in (MISSING, True):
            raise fields.error("End", f"must be true, got {end!r}")
        if (target is None) == (end is MISSING):
            raise fields.error("Next", "exactly one of Next or End: true is required")
        common["next"] = target
    return common


def _handlers(fields: Fields) -> dict[str, Any]:
    return {"retry": parse_retry(fields), "catch": parse_catch(fields)}


def _task(fields: Fields, name: str) -> State:
    resource = fields.string("Resource", required=True)
    assert resource is not None
    fields.exclusive("TimeoutSeconds", "TimeoutSecondsPath")
    return TaskState(
        **_common(fields, name), **_handlers(fields), resource=resource,
        parameters=_template(fields, "Parameters"),
        result_selector=_template(fields, "ResultSelector"), result_path=fields.result_path(),
        timeout_seconds=fields.integer("TimeoutSeconds", 1),
        timeout_seconds_path=fields.optional_path("TimeoutSecondsPath"),
        callback=resource.endswith(".waitForTaskToken"))


def _pass(fields: Fields, name: str) -> State:
    result = fields.get("Result")
    return PassState(**_common(fields, name), parameters=_template(fields, "Parameters"),
                     result=None if result is MISSING else result,
                     has_result=result is not MISSING, result_path=fields.result_path())


def _choice(fields: Fields, name: str) -> State:
    for key in ("Next", "End"):
        if fields.has(key):
            raise fields.error(key, "a Choice state moves on through Choices and Default")
    choices = fields.array("Choices", required=True) or []
    return ChoiceState(**_common(fields, name, transitions=False),
                       choices=tuple(parse_choice(rule, fields.at(f"Choices[{i}]"))
                                     for i, rule in enumerate(choices)),
                       default=fields.string("Default"))


def _wait(fields: Fields, name: str) -> State:
    keys = ("Seconds", "SecondsPath", "Timestamp", "TimestampPath")
    if sum(fields.has(key) for key in keys) != 1:
        raise fields.error("Seconds", "exactly one of Seconds, SecondsPath, Timestamp or "
                                      "TimestampPath is required")
    timestamp = fields.get("Timestamp")
    moment = None if timestamp is MISSING else parse_timestamp(timestamp)
    if timestamp is not MISSING and moment is None:
        raise fields.error("Timestamp", f"{timestamp!r} is not an RFC 3339 timestamp "
                                        "such as 2016-08-18T17:33:00Z")
    return WaitState(**_common(fields, name), seconds=fields.integer("Seconds"),
                     seconds_path=fields.optional_path("SecondsPath"), timestamp=moment,
                     timestamp_path=fields.optional_path("TimestampPath"))


def _succeed(fields: Fields, name: str) -> State:
    return SucceedState(**_common(fields, name, transitions=False))


def _fail(fields: Fields, name: str) -> State:
    fields.exclusive("Error", "ErrorPath")
    fields.exclusive("Cause", "CausePath")
    paths = {key: compile_expression(fields.get(key), fields.at(key))
             for key in ("ErrorPath", "CausePath") if fields.has(key)}
    return FailState(**_common(fields, name, io=False, transitions=False),
                     error=fields.string("Error"), cause=fields.string("Cause"),
                     error_path=paths.get("ErrorPath"), cause_path=paths.get("CausePath"))


def _processor(fields: Fields) -> Block:
    fields.exclusive("ItemProcessor", "Iterator")
    key = "Iterator" if fields.has("Iterator") else "ItemProcessor"
    processor = Fields(fields.get(key, required=True), fields.at(key))
    if key == "ItemProcessor" and processor.has("ProcessorConfig"):
        config = Fields(processor.get("ProcessorConfig"), processor.at("ProcessorConfig"))
        mode = config.get("Mode")
        if mode not in (MISSING, "INLINE"):
            raise config.error("Mode", f"{mode!r} is not supported (Distributed Map); "
                                       "only INLINE")
        config.finish()
    block = _block(processor)
    processor.finish()
    return block


def _map(fields: Fields, name: str) -> State:
    fields.exclusive("ItemSelector", "Parameters")
    fields.exclusive("MaxConcurrency", "MaxConcurrencyPath")
    selector = "ItemSelector" if fields.has("ItemSelector") else "Parameters"
    items_path = fields.path("ItemsPath", nullable=False)
    assert items_path is not None
    if items_path.steps is None:
        raise fields.error("ItemsPath", "must be a Reference Path")
    return MapState(
        **_common(fields, name), **_handlers(fields), processor=_processor(fields),
        items_path=items_path, item_selector=_template(fields, selector),
        max_concurrency=fields.integer("MaxConcurrency") or 0,
        max_concurrency_path=fields.optional_path("MaxConcurrencyPath"),
        result_selector=_template(fields, "ResultSelector"), result_path=fields.result_path())


def _parallel(fields: Fields, name: str) -> State:
    branches = []
    for i, raw in enumerate(fields.array("Branches", required=True) or []):
        branch = Fields(raw, fields.at(f"Branches[{i}]"))
        branches.append(_block(branch))
        branch.finish()
    return ParallelState(
        **_common(fields, name), **_handlers(fields), branches=tuple(branches),
        parameters=_template(fields, "Parameters"),
        result_selector=_template(fields, "ResultSelector"), result_path=fields.result_path())


_PARSERS: dict[str, Callable[[Fields, str], State]] = {
    "Task": _task, "Pass": _pass, "Choice": _choice, "Wait": _wait, "Succeed": _succeed,
    "Fail": _fail, "Map": _map, "Parallel": _parallel,
}


def _state(raw: Any, where: str, name: str) -> State:
    if len(name) > MAX_STATE_NAME:
        raise AslDefinitionError(f"{where}: state names are at most {MAX_STATE_NAME} characters")
    fields = Fields(raw, where)
    kind = fields.get("Type", required=True)
    if kind not in _PARSERS:
        raise fields.error("Type", f"{kind!r} is not supported")
    state = _PARSERS[kind](fields, name)
    fields.finish()
    return state


def _targets(state: State) -> list[tuple[str, str]]:
    """``(field, state name)`` for every transition out of ``state``."""
    out = [("Next", state.next)] if state.next else []
    out += [(f"Catch[{i}].Next", c.next) for i, c in enumerate(state.catch)]
    if isinstance(state, ChoiceState):
        out += [(f"Choices[{i}].Next", c.next) for i, c in enumerate(state.choices)]
        out += [("Default", state.default)] if state.default else []
    return out


def _check_transitions(fields: Fields, start_at: str, states: dict[str, State]) -> None:
    if start_at not in states:
        raise fields.error("StartAt", f"no state named {start_at!r}")
    for name, state in states.items():
        for key, target in _targets(state):
            if target not in states:
                raise fields.error(f"States.{name}.{key}", f"no state named {target!r}")
    reached, todo = {start_at}, [start_at]
    while todo:
        for _, target in _targets(states[todo.pop()]):
            if target not in reached:
                reached.add(target)
                todo.append(target)
    for name in states:
        if name not in reached:
            raise fields.error(f"States.{name}", "is not reachable from StartAt")


def _block(fields: Fields) -> Block:
    """StartAt and States of ``fields`` (the caller reads its other keys and finishes it)."""
    start_at = fields.string("StartAt", required=True)
    raw_states = fields.get("States", required=True)
    if not isinstance(raw_states, dict) or not raw_states:
        raise fields.error("States", "must be a non-empty object")
    fields.get("Comment")
    states = {name: _state(raw, fields.at(f"States.{name}"), name)
              for name, raw in raw_states.items()}
    assert start_at is not None
    _check_transitions(fields, start_at, states)
    return Block(start_at, states)


@dataclass(frozen=True)
class StateMachine:
    """A loaded, validated definition; immutable and safe to run many times at once."""

    name: str
    block: Block
    timeout_seconds: int | None
    definition: dict[str, Any]  # the definition after substitution

    @property
    def start_at(self) -> str:
        return self.block.start_at

    @property
    def states(self) -> Mapping[str, State]:
        return self.block.states

    @property
    def arn(self) -> str:
        """What ``$$.StateMachine.Id`` shows."""
        return f"arn:aws:states:local:000000000000:stateMachine:{self.name}"

    @classmethod
    def load(cls, definition: str | dict[str, Any],
             substitutions: Mapping[str, str] | None = None, *,
             name: str = "StateMachine") -> StateMachine:
        """Replace ``${Name}`` placeholders textually (as SAM DefinitionSubstitutions does),
        then parse and validate.

        An unknown placeholder, invalid JSON, an unsupported state or field, a
        transition to a missing state or an unreachable state is an
        AslDefinitionError naming the field. A dict definition is not modified.
        """
        subs = substitutions or {}
        if isinstance(definition, str):
            try:
                raw = json.loads(substitute(definition, subs))
            except json.JSONDecodeError as exc:
                raise AslDefinitionError(f"definition: not valid JSON: {exc}") from exc
        else:
            raw = _substitute_tree(definition, subs)
        fields = Fields(raw, "")
        block = _block(fields)
        fields.get("Version")
        language = fields.get("QueryLanguage")
        if language not in (MISSING, "JSONPath"):
            raise fields.error("QueryLanguage", f"{language!r} is not supported (only JSONPath)")
        timeout = fields.integer("TimeoutSeconds", 1)
        fields.finish()
        return cls(name, block, timeout, raw)
