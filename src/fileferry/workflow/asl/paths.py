"""JSONPath as ASL uses it: Paths, Reference Paths and the context object's ``$$``.

AWS evaluates paths with Jayway JsonPath; this module follows its rules on top
of ``jsonpath_ng.ext``:

- A *definite* path (only ``.name``, ``['name']`` and ``[index]`` steps) selects
  one node; the node itself is returned and a missing node is ``States.Runtime``.
- Any other path (wildcard, slice, filter, union, ``..``) returns an array of
  the matches, ``[]`` when nothing matches.
- A path starting ``$$`` selects from the context object instead of the data.
"""

from __future__ import annotations

import functools
import json
import random as _random
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from jsonpath_ng import JSONPath
from jsonpath_ng.ext.parser import parse as _jsonpath_parse
from jsonpath_ng.jsonpath import Child, Fields, Index, Root

from fileferry.workflow.asl.errors import (
    RESULT_PATH_MATCH_FAILURE,
    RUNTIME,
    AslDefinitionError,
    StatesError,
)

__all__ = ["ROOT", "Env", "JsonPath", "ReferencePath", "apply_path", "to_json"]

Step = str | int


@dataclass(frozen=True)
class Env:
    """What a path, template or intrinsic reads: the data (``$``) and the context (``$$``)."""

    data: Any
    context: Mapping[str, Any] = field(default_factory=dict)
    random: Callable[[], float] = _random.random


def to_json(value: Any) -> str:
    """Compact JSON as it appears in error causes."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)


@functools.lru_cache(maxsize=1024)
def _parse(source: str) -> JSONPath:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # deprecated jsonpath-ng syntax is refused
        return _jsonpath_parse(source)


def _definite_steps(expr: JSONPath) -> tuple[Step, ...] | None:
    """The steps of a path made only of single names and indices, else None."""
    if isinstance(expr, Root):
        return ()
    if isinstance(expr, Child):
        left, right = _definite_steps(expr.left), _definite_steps(expr.right)
        return None if left is None or right is None else left + right
    if isinstance(expr, Fields) and len(expr.fields) == 1 and expr.fields[0] != "*":
        return (str(expr.fields[0]),)
    if isinstance(expr, Index) and len(expr.indices) == 1:
        return (int(expr.indices[0]),)
    return None


def _walk(data: Any, steps: tuple[Step, ...]) -> tuple[bool, Any]:
    node = data
    for step in steps:
        if isinstance(step, str):
            if not isinstance(node, dict) or step not in node:
                return False, None
            node = node[step]
        elif isinstance(node, list) and -len(node) <= step < len(node):
            node = node[step]
        else:
            return False, None
    return True, node


@dataclass(frozen=True)
class JsonPath:
    """A compiled ASL Path (``$...`` over the data, ``$$...`` over the context)."""

    source: str
    context: bool
    steps: tuple[Step, ...] | None  # None: indefinite, returns a list
    expr: JSONPath = field(repr=False, compare=False)

    @classmethod
    def compile(cls, source: Any, where: str) -> JsonPath:
        """Parse ``source``; ``where`` names the field in the AslDefinitionError."""
        if not isinstance(source, str) or not source.startswith("$"):
            raise AslDefinitionError(f"{where}: {source!r} is not a JSONPath (must start with $)")
        context = source.startswith("$$")
        text = source[1:] if context else source
        if text.startswith("$") and len(text) > 1 and text[1] not in ".[":
            raise AslDefinitionError(
                f"{where}: {source!r} looks like a variable; Assign/variables are not supported")
        try:
            expr = _parse(text)
        except Exception as exc:  # jsonpath-ng raises several unrelated types
            raise AslDefinitionError(f"{where}: {source!r} is not a valid JSONPath: {exc}") from exc
        return cls(source, context, _definite_steps(expr), expr)

    def lookup(self, env: Env) -> tuple[bool, Any]:
        """``(found, value)``; an indefinite path is always found (maybe ``[]``)."""
        root = env.context if self.context else env.data
        if self.steps is not None:
            return _walk(root, self.steps)
        try:
            return True, [match.value for match in self.expr.find(root)]
        except Exception as exc:  # a filter comparing unlike types, for one
            raise StatesError(RUNTIME, f"The JSONPath '{self.source}' could not be "
                                       f"evaluated: {exc}") from exc

    def get(self, env: Env, field_name: str = "") -> Any:
        """The selected value; a missing definite node raises ``States.Runtime``."""
        found, value = self.lookup(env)
        if not found:
            where = f" specified for the field '{field_name}'" if field_name else ""
            root = env.context if self.context else env.data
            raise StatesError(RUNTIME, f"The JSONPath '{self.source}'{where} could not be "
                                       f"found in the input '{to_json(root)}'")
        return value


ROOT = JsonPath.compile("$", "<root>")


@dataclass(frozen=True)
class ReferencePath:
    """Where ``ResultPath`` puts a result inside the raw input."""

    source: str
    steps: tuple[Step, ...]

    @classmethod
    def compile(cls, source: Any, where: str) -> ReferencePath:
        path = JsonPath.compile(source, where)
        if path.steps is None or path.context:
            raise AslDefinitionError(f"{where}: {source!r} must be a Reference Path "
                                     "($ followed by .name, ['name'] or [index] steps only)")
        return cls(path.source, path.steps)

    def merge(self, raw: Any, result: Any) -> Any:
        """A copy of ``raw`` with ``result`` placed at this path; ``raw`` is not modified.

        Missing objects on the way are created. A step into something that is
        not an object (or an index outside an existing array) raises
        ``States.ResultPathMatchFailure``; ``$`` returns ``result`` itself.
        """
        return self._merge(raw, self.steps, result)

    def _merge(self, node: Any, steps: tuple[Step, ...], result: Any) -> Any:
        if not steps:
            return result
        step, rest = steps[0], steps[1:]
        if isinstance(step, str) and isinstance(node, dict):
            copy = dict(node)
            copy[step] = self._merge(node.get(step, {}) if rest else None, rest, result)
            return copy
        if isinstance(step, int) and isinstance(node, list) and -len(node) <= step < len(node):
            items = list(node)
            items[step] = self._merge(node[step], rest, result)
            return items
        raise StatesError(RESULT_PATH_MATCH_FAILURE,
                          f"Unable to apply ReferencePath {self.source} to input {to_json(node)}")


def apply_path(path: JsonPath | None, env: Env, field_name: str) -> Any:
    """``InputPath``/``OutputPath``: ``None`` (JSON null) gives ``{}``; a miss is Runtime."""
    if path is None:
        return {}
    found, value = path.lookup(env)
    if not found:
        raise StatesError(RUNTIME, f"Invalid path '{path.source}' : No results for path "
                                   f"in the {field_name} of input '{to_json(env.data)}'")
    return value
