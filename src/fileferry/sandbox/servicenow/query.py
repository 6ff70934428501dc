"""The encoded-query grammar (``sysparm_query``) of the ServiceNow Table API emulator.

``a^b^ORc`` is ``a AND (b OR c)``; ``^NQ`` separates whole alternative queries;
``ORDERBY<f>``/``ORDERBYDESC<f>`` sort. Terms on unknown fields are ignored (they match
every row) unless ``strict`` is set, as with ``glide.invalid_query.returns_no_rows``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

__all__ = ["Query", "Term", "parse_query"]

_TERM = re.compile(
    r"^(?P<field>[A-Za-z0-9_.]+?)"
    r"(?P<op>ISNOTEMPTY|ISEMPTY|NOT IN|NOTLIKE|IN|LIKE|STARTSWITH|ENDSWITH|!=|<=|>=|=|<|>)"
    r"(?P<value>.*)$",
    re.DOTALL,
)

# Resolves a (possibly dot-walked) field of a record to its stored value; None = unknown field.
Resolver = Callable[[dict[str, str], str], "str | None"]


@dataclass(frozen=True)
class Term:
    field: str
    op: str
    value: str

    def matches(self, record: dict[str, str], resolve: Resolver, strict: bool) -> bool:
        actual = resolve(record, self.field)
        if actual is None:
            return not strict
        op, want = self.op, self.value
        if op == "=":
            return actual == want
        if op == "!=":
            return actual != want
        if op == "ISEMPTY":
            return actual == ""
        if op == "ISNOTEMPTY":
            return actual != ""
        if op in ("IN", "NOT IN"):
            inside = actual in [v.strip() for v in want.split(",")]
            return inside if op == "IN" else not inside
        low, target = actual.lower(), want.lower()  # LIKE & co. follow the DB collation
        if op == "LIKE":
            return target in low
        if op == "NOTLIKE":
            return target not in low
        if op == "STARTSWITH":
            return low.startswith(target)
        if op == "ENDSWITH":
            return low.endswith(target)
        return _compare(actual, want, op)


def _compare(actual: str, want: str, op: str) -> bool:
    if actual == "":
        return False
    try:
        sign = _sign(float(actual), float(want))
    except ValueError:
        sign = _sign(actual, want)
    return {"<": sign < 0, "<=": sign <= 0, ">": sign > 0, ">=": sign >= 0}[op]


def _sign(left: float | str, right: float | str) -> int:
    return 0 if left == right else (-1 if left < right else 1)  # type: ignore[operator]


@dataclass
class Query:
    # OR of alternatives (^NQ); each alternative is an AND of OR-groups.
    alternatives: list[list[list[Term]]] = field(default_factory=list)
    order: list[tuple[str, bool]] = field(default_factory=list)  # (field, descending)

    def matches(self, record: dict[str, str], resolve: Resolver, strict: bool = False) -> bool:
        if not self.alternatives:
            return True
        return any(
            all(any(t.matches(record, resolve, strict) for t in group) for group in alt)
            for alt in self.alternatives
        )

    def sort(self, records: Sequence[dict[str, str]], resolve: Resolver) -> list[dict[str, str]]:
        rows = list(records)
        for name, descending in reversed(self.order):
            values = [resolve(r, name) or "" for r in rows]
            numeric = all(_is_number(v) for v in values if v != "")
            keyed = list(zip(values, rows, strict=True))
            if numeric:
                keyed.sort(key=lambda pair: (pair[0] != "", float(pair[0] or 0)),
                           reverse=descending)
            else:
                keyed.sort(key=lambda pair: pair[0], reverse=descending)
            rows = [row for _, row in keyed]
        return rows


def _is_number(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return True


def parse_query(text: str) -> Query:
    query = Query()
    for chunk in text.split("^NQ"):
        alternative: list[list[Term]] = []
        for part in chunk.split("^"):
            if not part or part == "EQ":
                continue
            if part.startswith("ORDERBYDESC"):
                query.order.append((part[len("ORDERBYDESC"):], True))
                continue
            if part.startswith("ORDERBY"):
                query.order.append((part[len("ORDERBY"):], False))
                continue
            is_or = part.startswith("OR") and bool(alternative)
            term = _parse_term(part[2:] if is_or else part)
            if term is None:
                continue  # unparsable terms are ignored, like unknown fields
            if is_or:
                alternative[-1].append(term)
            else:
                alternative.append([term])
        if alternative:
            query.alternatives.append(alternative)
    if len(query.alternatives) < len([c for c in text.split("^NQ") if c.strip("^")]):
        # an alternative made only of ignored terms matches everything
        query.alternatives.append([])
    return query


def _parse_term(text: str) -> Term | None:
    match = _TERM.match(text)
    if match is None:
        return None
    return Term(match["field"], match["op"], match["value"])
