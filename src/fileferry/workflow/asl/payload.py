"""The 256 KiB payload limit, JSON normalisation and JSON equality."""

from __future__ import annotations

import json
from typing import Any

from fileferry.workflow.asl.errors import DATA_LIMIT_EXCEEDED, RUNTIME, StatesError

__all__ = ["MAX_PAYLOAD_BYTES", "check_size", "json_equal", "normalise"]

MAX_PAYLOAD_BYTES = 262_144


def _encode(value: Any, what: str) -> bytes:
    try:
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise StatesError(RUNTIME, f"{what} is not JSON: {exc}") from exc
    return text.encode("utf-8", errors="surrogatepass")


def check_size(value: Any, what: str) -> None:
    """Raise ``States.DataLimitExceeded`` when ``value`` exceeds 262,144 UTF-8 bytes as JSON.

    A value that is not JSON at all (a set, NaN, an object) raises ``States.Runtime``.
    """
    size = len(_encode(value, what))
    if size > MAX_PAYLOAD_BYTES:
        raise StatesError(DATA_LIMIT_EXCEEDED, f"{what} is {size} bytes, more than the "
                                               f"{MAX_PAYLOAD_BYTES} bytes Step Functions allows")


def normalise(value: Any, what: str) -> Any:
    """A JSON round trip of ``value``: tuples become lists, nothing is shared with the caller.

    Raises as ``check_size`` does.
    """
    encoded = _encode(value, what)
    if len(encoded) > MAX_PAYLOAD_BYTES:
        check_size(value, what)
    return json.loads(encoded)


def json_equal(a: Any, b: Any) -> bool:
    """Equality of JSON values: ``true`` is not ``1``; ``1`` equals ``1.0``."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, (dict, list)) or isinstance(b, (dict, list)):
        return False
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    return type(a) is type(b) and a == b
