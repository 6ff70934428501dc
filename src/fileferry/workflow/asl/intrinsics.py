"""Parsing and evaluating intrinsic calls such as ``States.Format('{} files', $.count)``.

Arguments are string literals in single quotes (``\\'``, ``\\{``, ``\\}`` and
``\\\\`` escape those characters), numbers, ``true``/``false``/``null``, paths
(``$.x``, ``$$.Execution.Id``) and nested calls, at most 10 deep. Unknown
functions and wrong argument counts are AslDefinitionErrors at load time; a bad
argument value at run time is ``States.IntrinsicFailure``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from fileferry.workflow.asl.errors import INTRINSIC_FAILURE, AslDefinitionError, StatesError
from fileferry.workflow.asl.intrinsic_functions import ARITY, FUNCTIONS, render_format
from fileferry.workflow.asl.paths import Env, JsonPath

__all__ = ["MAX_NESTING", "Call", "Literal", "compile_intrinsic", "evaluate", "is_intrinsic"]

MAX_NESTING = 10
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?")
_NAME = re.compile(r"States\.[A-Za-z0-9]+")
_KEYWORDS = {"true": True, "false": False, "null": None}


@dataclass(frozen=True)
class Literal:
    """A constant argument; ``pieces`` is a string literal split at its unescaped ``{}``."""

    value: Any
    pieces: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Call:
    """One intrinsic call with its parsed arguments."""

    name: str
    args: tuple[Literal | JsonPath | Call, ...]


def is_intrinsic(text: str) -> bool:
    return text.startswith("States.")


class _Parser:
    def __init__(self, text: str, where: str) -> None:
        self.text, self.where, self.pos = text, where, 0

    def fail(self, message: str) -> AslDefinitionError:
        return AslDefinitionError(f"{self.where}: {message} at character {self.pos + 1} "
                                  f"of {self.text!r}")

    def skip_space(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def call(self, depth: int) -> Call:
        if depth > MAX_NESTING:
            raise self.fail(f"more than {MAX_NESTING} nested intrinsic functions")
        match = _NAME.match(self.text, self.pos)
        if not match or match.group() not in FUNCTIONS:
            raise self.fail("unknown intrinsic function" if match else "expected States.Name(")
        name, self.pos = match.group(), match.end()
        self.skip_space()
        if self.peek() != "(":
            raise self.fail("expected '('")
        self.pos += 1
        args: list[Literal | JsonPath | Call] = []
        self.skip_space()
        while self.peek() != ")":
            if args:
                if self.peek() != ",":
                    raise self.fail("expected ',' or ')'")
                self.pos += 1
                self.skip_space()
            args.append(self.argument(depth))
            self.skip_space()
        self.pos += 1
        low, high = ARITY[name]
        if len(args) < low or (high is not None and len(args) > high):
            wanted = f"{low}" if low == high else f"{low}+" if high is None else f"{low}-{high}"
            raise AslDefinitionError(f"{self.where}: {name} takes {wanted} argument(s), "
                                     f"got {len(args)}")
        return Call(name, tuple(args))

    def argument(self, depth: int) -> Literal | JsonPath | Call:
        char = self.peek()
        if char == "'":
            return self.string()
        if char == "$":
            return self.path()
        if self.text.startswith("States.", self.pos):
            return self.call(depth + 1)
        number = _NUMBER.match(self.text, self.pos)
        if number:
            self.pos = number.end()
            text = number.group()
            return Literal(float(text) if any(c in text for c in ".eE") else int(text))
        for word, value in _KEYWORDS.items():
            if self.text.startswith(word, self.pos):
                self.pos += len(word)
                return Literal(value)
        raise self.fail("expected an argument" if char else "unexpected end")

    def string(self) -> Literal:
        self.pos += 1
        pieces: list[str] = []
        current: list[str] = []
        while True:
            char = self.peek()
            if not char:
                raise self.fail("unterminated string")
            self.pos += 1
            if char == "'":
                pieces.append("".join(current))
                return Literal("{}".join(pieces), tuple(pieces))
            if char == "\\":
                if not self.peek():
                    raise self.fail("unterminated string")
                current.append(self.peek())
                self.pos += 1
            elif char == "{" and self.peek() == "}":
                pieces.append("".join(current))
                current = []
                self.pos += 1
            else:
                current.append(char)

    def path(self) -> JsonPath:
        """A path runs to the first ``,`` or ``)`` outside brackets, parentheses and quotes."""
        start, depth, quote = self.pos, 0, ""
        while self.pos < len(self.text):
            char = self.text[self.pos]
            if quote:
                quote = "" if char == quote else quote
            elif char in "'\"":
                quote = char
            elif char in "[(":
                depth += 1
            elif char in "])" and depth:
                depth -= 1
            elif char in ",)":
                break
            self.pos += 1
        return JsonPath.compile(self.text[start:self.pos].rstrip(), self.where)


def compile_intrinsic(text: str, where: str) -> Call:
    """Parse a whole field value such as ``States.Array($.a, 'b')``."""
    parser = _Parser(text, where)
    call = parser.call(1)
    parser.skip_space()
    if parser.pos != len(text):
        raise parser.fail("unexpected text after the call")
    return call


def _argument(arg: Literal | JsonPath | Call, env: Env) -> Any:
    if isinstance(arg, Literal):
        return arg.value
    if isinstance(arg, JsonPath):
        return arg.get(env)
    return evaluate(arg, env)


def evaluate(call: Call, env: Env) -> Any:
    """Run ``call``; a bad argument raises ``States.IntrinsicFailure``, a missing path Runtime."""
    values = [_argument(arg, env) for arg in call.args]
    first = call.args[0] if call.args else None
    try:
        if call.name == "States.Format" and isinstance(first, Literal) and first.pieces:
            return render_format(list(first.pieces), values[1:])
        return FUNCTIONS[call.name](values, env.random)
    except (ValueError, TypeError, OverflowError) as exc:
        raise StatesError(INTRINSIC_FAILURE, f"{call.name}: {exc}") from exc
