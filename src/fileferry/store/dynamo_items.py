"""How the DynamoDB backend lays a store item out as DynamoDB attributes, and back.

One item of store table ``T`` is one DynamoDB item of table ``{prefix}-T``::

    pk, sk       S   the keys (HASH, RANGE)
    version      N   what a conditional put compares: ``version = :v``
    item         S   the whole item as JSON: the only attribute ever read back
    f_NAME       -   a typed copy of each top-level field, for scan's FilterExpression
    expires_at   N   in tables with expiry (``base.TABLES``): DynamoDB's TTL attribute

Why JSON and not a native map: DynamoDB numbers are decimals (boto3 returns
``Decimal`` and refuses ``float``), so ``0.1`` or ``1.0`` would not come back
as the float they were, and ints and floats would blur. A JSON string
round-trips floats, nested dicts and lists exactly, as the SQLite backend
does. The copies keep the scalar's type (S, N, BOOL, NULL), so
``where={"name": 3}`` does not match ``"3"``; a nested value, or a number
DynamoDB cannot hold (more than 38 digits, beyond 1e125), is copied as an
empty map: present, so ``where={"x": None}`` does not match it, and equal to
no scalar. The copies roughly double an item's size against DynamoDB's
400 KB limit; the store's items are a few KB.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from fileferry.store.base import TABLES, Item, Row

__all__ = ["COPY_PREFIX", "decode", "encode", "filter_expression", "item_of", "key"]

COPY_PREFIX = "f_"
Attribute = dict[str, Any]
_OPAQUE: Attribute = {"M": {}}  # the copy of a value no scalar equals


def key(pk: str, sk: str) -> dict[str, Attribute]:
    return {"pk": {"S": pk}, "sk": {"S": sk}}


def _number(value: int | float) -> str | None:
    """DynamoDB's text for the number, or None when DynamoDB cannot hold it exactly."""
    exact = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    if exact.is_zero():
        return "0"
    digits = len(exact.normalize().as_tuple().digits)
    if digits > 38 or not -130 <= exact.adjusted() <= 125:
        return None
    return str(exact)


def _scalar(value: Any) -> Attribute:
    if value is None:
        return {"NULL": True}
    if isinstance(value, bool):  # before int: bool is an int
        return {"BOOL": value}
    if isinstance(value, str):
        return {"S": value}
    if isinstance(value, int | float):
        text = _number(value)
        return _OPAQUE if text is None else {"N": text}
    return _OPAQUE


def encode(table: str, pk: str, sk: str, item: Item) -> dict[str, Attribute]:
    """The DynamoDB item; TypeError/ValueError (before anything is sent) when ``item``
    is not JSON (NaN and infinity included)."""
    text = json.dumps(item, separators=(",", ":"), allow_nan=False)
    record: dict[str, Attribute] = {**key(pk, sk),
                                    "version": {"N": str(int(item.get("version", 0)))},
                                    "item": {"S": text}}
    for name, value in item.items():
        record[COPY_PREFIX + name] = _scalar(value)
    ttl = TABLES.get(table)
    expires = item.get(ttl) if ttl else None
    if ttl and isinstance(expires, int | float) and not isinstance(expires, bool):
        record[ttl] = {"N": str(int(expires))}  # TTL wants whole epoch seconds
    return record


def item_of(record: Mapping[str, Attribute]) -> Item:
    return dict(json.loads(record["item"]["S"]))


def decode(record: Mapping[str, Attribute]) -> Row:
    return Row(str(record["pk"]["S"]), str(record["sk"]["S"]), item_of(record))


def filter_expression(where: Mapping[str, Any]) -> dict[str, Any]:
    """Scan arguments matching items whose top-level fields equal every value in ``where``;
    a None matches a missing field too (as SQLite's ``json_extract(...) IS NULL``)."""
    parts: list[str] = []
    names: dict[str, str] = {}
    values: dict[str, Attribute] = {}
    for i, (field, value) in enumerate(where.items()):
        if not isinstance(value, str | int | float | bool) and value is not None:
            raise ValueError(f"scan: where[{field!r}] must be a scalar, not {value!r}")
        names[f"#w{i}"] = COPY_PREFIX + field
        if value is None:
            values[f":w{i}"] = {"S": "NULL"}
            parts.append(f"(attribute_not_exists(#w{i}) OR attribute_type(#w{i}, :w{i}))")
            continue
        attribute = _scalar(value)
        if attribute is _OPAQUE:
            raise ValueError(f"scan: where[{field!r}] = {value!r} is a number DynamoDB "
                             "cannot hold (38 digits, 1e-130 to 1e125)")
        values[f":w{i}"] = attribute
        parts.append(f"#w{i} = :w{i}")
    if not parts:
        return {}
    return {"FilterExpression": " AND ".join(parts), "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values}
