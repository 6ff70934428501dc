"""Payload templates: ``Parameters``, ``ResultSelector`` and ``ItemSelector``.

A key ending in ``.$`` holds a path (``$.x``), a context path (``$$.Map.Item.Index``)
or an intrinsic call, and is emitted without the ``.$``. Every other value is
copied as it is; objects and arrays are processed recursively.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fileferry.workflow.asl.errors import AslDefinitionError
from fileferry.workflow.asl.intrinsics import Call, compile_intrinsic, evaluate, is_intrinsic
from fileferry.workflow.asl.paths import Env, JsonPath

__all__ = ["Expression", "Template", "compile_expression", "evaluate_expression"]

Expression = JsonPath | Call


@dataclass(frozen=True)
class _Dynamic:
    key: str  # the key as written, ending in .$
    source: JsonPath | Call


_Node = dict[str, Any] | list[Any] | _Dynamic | Any


def compile_expression(value: Any, where: str) -> Expression:
    """A path (``$...``, ``$$...``) or an intrinsic call: what ``.$`` fields hold."""
    if not isinstance(value, str):
        raise AslDefinitionError(f"{where}: must be a path or an intrinsic function, "
                                 f"got {value!r}")
    if is_intrinsic(value):
        return compile_intrinsic(value, where)
    return JsonPath.compile(value, where)


def evaluate_expression(expression: Expression, env: Env, field_name: str) -> Any:
    """The value of ``expression``; a missing path raises ``States.Runtime`` naming the field."""
    if isinstance(expression, JsonPath):
        return expression.get(env, field_name)
    return evaluate(expression, env)


def _compile_dynamic(key: str, value: Any, where: str) -> _Dynamic:
    return _Dynamic(key, compile_expression(value, where))


def _compile(node: Any, where: str) -> _Node:
    if isinstance(node, list):
        return [_compile(item, f"{where}[{i}]") for i, item in enumerate(node)]
    if not isinstance(node, dict):
        return node
    compiled: dict[str, Any] = {}
    for key, value in node.items():
        name = key[:-2] if key.endswith(".$") else key
        if name in compiled:
            raise AslDefinitionError(f"{where}.{key}: duplicates the field {name!r}")
        path = f"{where}.{key}"
        compiled[name] = (_compile_dynamic(key, value, path) if key.endswith(".$")
                          else _compile(value, path))
    return compiled


def _render(node: _Node, env: Env) -> Any:
    if isinstance(node, _Dynamic):
        return evaluate_expression(node.source, env, node.key)
    if isinstance(node, dict):
        return {key: _render(value, env) for key, value in node.items()}
    if isinstance(node, list):
        return [_render(item, env) for item in node]
    return node


@dataclass(frozen=True)
class Template:
    """A compiled payload template."""

    root: _Node

    @classmethod
    def compile(cls, raw: Any, where: str) -> Template:
        """Compile any JSON value; paths and intrinsics are checked now, naming the field."""
        return cls(_compile(raw, where))

    def render(self, env: Env) -> Any:
        """The payload for ``env``: a missing path is ``States.Runtime`` (as AWS does, not
        the spec's ``States.ParameterPathFailure``); an intrinsic may raise
        ``States.IntrinsicFailure``."""
        return _render(self.root, env)
