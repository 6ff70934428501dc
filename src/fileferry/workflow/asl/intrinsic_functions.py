"""The ``States.*`` intrinsic functions, over already-evaluated arguments.

Each function raises ``ValueError`` on a bad argument; the caller turns that
into ``States.IntrinsicFailure``. Arity is checked at load time (``ARITY``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
import random as _random
import re
import uuid
from collections.abc import Callable
from typing import Any

from fileferry.workflow.asl.payload import json_equal

__all__ = ["ARITY", "FUNCTIONS", "format_value", "render_format"]

MAX_RANGE_ITEMS = 1000
MAX_CODEC_CHARS = 10_000
HASH_ALGORITHMS = {"MD5": "md5", "SHA-1": "sha1", "SHA-256": "sha256",
                   "SHA-384": "sha384", "SHA-512": "sha512"}

Function = Callable[[list[Any], Callable[[], float]], Any]


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _integer(value: Any, what: str) -> int:
    """A whole number (``2.0`` is fine, ``2.5`` is not)."""
    if not _is_number(value) or not float(value).is_integer():
        raise ValueError(f"{what} must be an integer, got {json.dumps(value)}")
    return int(value)


def _rounded(value: Any, what: str) -> int:
    """Any number, rounded half up as Java's Math.round does (-2.5 -> -2)."""
    if not _is_number(value):
        raise ValueError(f"{what} must be a number, got {json.dumps(value)}")
    return int(value) if isinstance(value, int) else math.floor(value + 0.5)


def _array(value: Any, what: str) -> list[Any]:
    if not isinstance(value, list):
        raise ValueError(f"{what} must be an array, got {json.dumps(value)}")
    return value


def _string(value: Any, what: str, limit: int | None = None) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{what} must be a string, got {json.dumps(value)}")
    if limit is not None and len(value) > limit:
        raise ValueError(f"{what} has {len(value)} characters, more than {limit}")
    return value


def format_value(value: Any) -> str:
    """How ``States.Format`` prints a value: strings bare, objects as ``{k=v, ...}`` (as AWS)."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "[" + ", ".join(format_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}={format_value(v)}" for k, v in value.items()) + "}"
    return json.dumps(value)


def render_format(pieces: list[str], values: list[Any]) -> str:
    """Join ``pieces`` (the template split at each ``{}``) with the formatted ``values``."""
    if len(pieces) - 1 != len(values):
        raise ValueError(f"the template has {len(pieces) - 1} placeholder(s) "
                         f"but {len(values)} argument(s) were given")
    out = [pieces[0]]
    for value, piece in zip(values, pieces[1:], strict=True):
        out += [format_value(value), piece]
    return "".join(out)


def _format(args: list[Any], _: Callable[[], float]) -> Any:
    return render_format(_string(args[0], "the template").split("{}"), args[1:])


def _string_to_json(args: list[Any], _: Callable[[], float]) -> Any:
    try:
        return json.loads(_string(args[0], "the argument"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"the argument is not JSON: {exc}") from exc


def _json_merge(args: list[Any], _: Callable[[], float]) -> Any:
    first, second, deep = args
    if not isinstance(first, dict) or not isinstance(second, dict):
        raise ValueError("both values to merge must be JSON objects")
    if deep is not False:
        raise ValueError("only shallow merging is supported: the third argument must be false")
    return {**first, **second}


def _partition(args: list[Any], _: Callable[[], float]) -> Any:
    items, size = _array(args[0], "the array"), _integer(args[1], "the chunk size")
    if size <= 0:
        raise ValueError(f"the chunk size must be positive, got {size}")
    return [items[i:i + size] for i in range(0, len(items), size)]


def _contains(args: list[Any], _: Callable[[], float]) -> Any:
    return any(json_equal(item, args[1]) for item in _array(args[0], "the array"))


def _range(args: list[Any], _: Callable[[], float]) -> Any:
    start, end, step = (_integer(a, n) for a, n in zip(args, ("start", "end", "step"),
                                                          strict=True))
    if step <= 0:  # LocalStack refuses these too; stricter than guessing AWS allows them
        raise ValueError(f"the step must be positive, got {step}")
    values = range(start, end + 1, step)
    if len(values) > MAX_RANGE_ITEMS:
        raise ValueError(f"the range has {len(values)} items, more than {MAX_RANGE_ITEMS}")
    return list(values)


def _get_item(args: list[Any], _: Callable[[], float]) -> Any:
    items, index = _array(args[0], "the array"), _integer(args[1], "the index")
    if not 0 <= index < len(items):
        raise ValueError(f"index {index} is outside the array of {len(items)} items")
    return items[index]


def _unique(args: list[Any], _: Callable[[], float]) -> Any:
    seen: list[Any] = []
    for item in _array(args[0], "the array"):
        if not any(json_equal(item, other) for other in seen):
            seen.append(item)
    return seen


def _b64encode(args: list[Any], _: Callable[[], float]) -> Any:
    data = _string(args[0], "the data", MAX_CODEC_CHARS)
    return base64.b64encode(data.encode("utf-8")).decode("ascii")


def _b64decode(args: list[Any], _: Callable[[], float]) -> Any:
    data = _string(args[0], "the data", MAX_CODEC_CHARS)
    try:
        return base64.b64decode(data, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise ValueError(f"the data is not Base64-encoded UTF-8: {exc}") from exc


def _hash(args: list[Any], _: Callable[[], float]) -> Any:
    data = _string(args[0], "the data", MAX_CODEC_CHARS)
    algorithm = _string(args[1], "the algorithm")
    if algorithm not in HASH_ALGORITHMS:
        raise ValueError(f"the algorithm must be one of {', '.join(HASH_ALGORITHMS)}")
    return hashlib.new(HASH_ALGORITHMS[algorithm], data.encode("utf-8")).hexdigest()


def _math_random(args: list[Any], rng: Callable[[], float]) -> Any:
    """An integer in [start, end], both ends included (as LocalStack)."""
    start, end = _rounded(args[0], "start"), _rounded(args[1], "end")
    if end < start:
        raise ValueError(f"end ({end}) is less than start ({start})")
    if len(args) == 3:
        return _random.Random(_rounded(args[2], "seed")).randint(start, end)
    return min(end, start + math.floor(rng() * (end - start + 1)))


def _math_add(args: list[Any], _: Callable[[], float]) -> Any:
    return _rounded(args[0], "the first value") + _rounded(args[1], "the second value")


def _split(args: list[Any], _: Callable[[], float]) -> Any:
    text, delimiters = _string(args[0], "the string"), _string(args[1], "the delimiters")
    if not delimiters:
        return [text] if text else []
    parts = re.split("|".join(re.escape(c) for c in delimiters), text)
    return [part for part in parts if part]


FUNCTIONS: dict[str, Function] = {
    "States.Format": _format,
    "States.StringToJson": _string_to_json,
    "States.JsonToString": lambda a, _: json.dumps(a[0], separators=(",", ":"),
                                                   ensure_ascii=False),
    "States.JsonMerge": _json_merge,
    "States.Array": lambda a, _: list(a),
    "States.ArrayPartition": _partition,
    "States.ArrayContains": _contains,
    "States.ArrayRange": _range,
    "States.ArrayGetItem": _get_item,
    "States.ArrayLength": lambda a, _: len(_array(a[0], "the argument")),
    "States.ArrayUnique": _unique,
    "States.Base64Encode": _b64encode,
    "States.Base64Decode": _b64decode,
    "States.Hash": _hash,
    "States.MathRandom": _math_random,
    "States.MathAdd": _math_add,
    "States.StringSplit": _split,
    "States.UUID": lambda a, _: str(uuid.uuid4()),
}

# name -> (fewest, most) arguments; None: no upper bound.
ARITY: dict[str, tuple[int, int | None]] = {
    "States.Format": (1, None), "States.StringToJson": (1, 1), "States.JsonToString": (1, 1),
    "States.JsonMerge": (3, 3), "States.Array": (0, None), "States.ArrayPartition": (2, 2),
    "States.ArrayContains": (2, 2), "States.ArrayRange": (3, 3), "States.ArrayGetItem": (2, 2),
    "States.ArrayLength": (1, 1), "States.ArrayUnique": (1, 1), "States.Base64Encode": (1, 1),
    "States.Base64Decode": (1, 1), "States.Hash": (2, 2), "States.MathRandom": (2, 3),
    "States.MathAdd": (2, 2), "States.StringSplit": (2, 2), "States.UUID": (0, 0),
}
