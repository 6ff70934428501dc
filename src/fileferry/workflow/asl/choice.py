"""Choice rules: parsing and testing.

Types are never coerced: comparing a string with a number is simply false.
Strings compare as Java's ``compareTo`` (UTF-16 code units), timestamps as
instants. ``StringMatches`` knows only ``*``; ``\\*`` and ``\\\\`` stand for
themselves. A missing ``Variable`` is ``States.Runtime`` except for
``IsPresent``.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fileferry.workflow.asl.fields import Fields
from fileferry.workflow.asl.paths import Env, JsonPath
from fileferry.workflow.asl.timestamps import parse_timestamp

__all__ = ["And", "ChoiceRule", "Comparison", "Not", "Or", "Rule", "parse_choice", "test"]

_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "Equals": operator.eq, "LessThan": operator.lt, "GreaterThan": operator.gt,
    "LessThanEquals": operator.le, "GreaterThanEquals": operator.ge,
}
# operator -> (kind of both operands, comparison); "Path" variants added below
OPERATORS: dict[str, tuple[str, Callable[[Any, Any], bool]]] = {
    f"{family}{name}": (family.lower(), compare)
    for family in ("String", "Numeric", "Timestamp") for name, compare in _COMPARE.items()
}
OPERATORS["BooleanEquals"] = ("boolean", operator.eq)
OPERATORS.update({f"{name}Path": spec for name, spec in list(OPERATORS.items())})
TYPE_TESTS = ("IsNull", "IsPresent", "IsNumeric", "IsString", "IsBoolean", "IsTimestamp")
ALL_OPERATORS = (*OPERATORS, "StringMatches", *TYPE_TESTS, "And", "Or", "Not")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _operand(kind: str, value: Any) -> Any:
    """``value`` in comparable form for ``kind``, or None when it is of another type."""
    if kind == "string" and isinstance(value, str):
        return value.encode("utf-16-be", errors="surrogatepass")
    if kind == "numeric" and _is_number(value):
        return value
    if kind == "boolean" and isinstance(value, bool):
        return value
    if kind == "timestamp":
        return parse_timestamp(value)
    return None


def _glob(pattern: str) -> re.Pattern[str]:
    out, chars = [], iter(pattern)
    for char in chars:
        if char == "\\":
            out.append(re.escape(next(chars, "\\")))
        else:
            out.append(".*" if char == "*" else re.escape(char))
    return re.compile("".join(out), re.DOTALL)


@dataclass(frozen=True)
class Comparison:
    variable: JsonPath
    operator: str
    value: Any  # a JsonPath for the *Path operators, a compiled pattern for StringMatches


@dataclass(frozen=True)
class And:
    rules: tuple[Rule, ...]


@dataclass(frozen=True)
class Or:
    rules: tuple[Rule, ...]


@dataclass(frozen=True)
class Not:
    rule: Rule


Rule = Comparison | And | Or | Not


@dataclass(frozen=True)
class ChoiceRule:
    rule: Rule
    next: str


def _type_test(name: str, found: bool, value: Any) -> bool:
    checks: dict[str, Callable[[], bool]] = {
        "IsPresent": lambda: found,
        "IsNull": lambda: value is None,
        "IsNumeric": lambda: _is_number(value),
        "IsString": lambda: isinstance(value, str),
        "IsBoolean": lambda: isinstance(value, bool),
        "IsTimestamp": lambda: parse_timestamp(value) is not None,
    }
    return checks[name]()


def _compare(rule: Comparison, env: Env) -> bool:
    value = rule.variable.get(env, "Variable")
    if rule.operator == "StringMatches":
        return isinstance(value, str) and bool(rule.value.fullmatch(value))
    kind, compare = OPERATORS[rule.operator]
    other = rule.value.get(env, rule.operator) if isinstance(rule.value, JsonPath) \
        else rule.value
    left, right = _operand(kind, value), _operand(kind, other)
    return left is not None and right is not None and compare(left, right)


def test(rule: Rule, env: Env) -> bool:
    """Whether ``rule`` holds for ``env.data``; raises ``States.Runtime`` on a missing Variable."""
    if isinstance(rule, And):
        return all(test(r, env) for r in rule.rules)
    if isinstance(rule, Or):
        return any(test(r, env) for r in rule.rules)
    if isinstance(rule, Not):
        return not test(rule.rule, env)
    if rule.operator in TYPE_TESTS:
        found, value = rule.variable.lookup(env)
        if not found and rule.operator != "IsPresent":
            rule.variable.get(env, "Variable")  # raises States.Runtime
        return _type_test(rule.operator, found, value) is rule.value
    return _compare(rule, env)


def _literal(fields: Fields, name: str, value: Any) -> Any:
    """Check a comparison's constant at load time and return its compiled form."""
    if name.endswith("Path"):
        return JsonPath.compile(value, fields.at(name))
    if name in TYPE_TESTS:
        kind = "boolean"
    elif name == "StringMatches":
        kind = "string"
    else:
        kind = OPERATORS[name][0]
    if _operand(kind, value) is None:
        raise fields.error(name, f"must be a {kind}, got {value!r}")
    if name == "StringMatches":
        return _glob(value)
    return value


def _rule(raw: Any, where: str, top: bool) -> tuple[Rule, str | None]:
    fields = Fields(raw, where)
    target = fields.string("Next", required=top) if top else None
    if not top and fields.has("Next"):
        raise fields.error("Next", "is allowed only in top-level choice rules")
    present = [key for key in fields.raw if key in ALL_OPERATORS]
    if len(present) != 1:
        raise fields.error("Variable" if not present else present[1],
                           "each rule needs exactly one comparison operator, And, Or or Not")
    name = present[0]
    value = fields.get(name)
    fields.get("Comment")
    rule: Rule
    if name in ("And", "Or"):
        items = fields.array(name, required=True) or []
        rules = tuple(_rule(item, fields.at(f"{name}[{i}]"), False)[0]
                      for i, item in enumerate(items))
        rule = And(rules) if name == "And" else Or(rules)
    elif name == "Not":
        rule = Not(_rule(value, fields.at("Not"), False)[0])
    else:
        variable = fields.get("Variable", required=True)
        rule = Comparison(JsonPath.compile(variable, fields.at("Variable")), name,
                          _literal(fields, name, value))
    fields.finish()
    return rule, target


def parse_choice(raw: Any, where: str) -> ChoiceRule:
    """One top-level rule of ``Choices``; it must have ``Next``."""
    rule, target = _rule(raw, where, True)
    assert target is not None
    return ChoiceRule(rule, target)
