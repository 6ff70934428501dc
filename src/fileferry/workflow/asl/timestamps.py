"""RFC 3339 timestamps as ASL writes them (``2016-08-18T17:33:00Z``)."""

from __future__ import annotations

import re
from datetime import UTC, datetime

__all__ = ["format_timestamp", "parse_timestamp"]

_TIMESTAMP = re.compile(
    r"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d+))?(Z|[+-]\d{2}:\d{2})")


def parse_timestamp(value: object) -> datetime | None:
    """The aware datetime, or None when ``value`` is not an ASL timestamp.

    The ``T`` and ``Z`` must be uppercase; an offset such as ``+02:00`` is
    accepted; fractions beyond microseconds are truncated.
    """
    if not isinstance(value, str):
        return None
    match = _TIMESTAMP.fullmatch(value)
    if not match:
        return None
    base, fraction, zone = match.groups()
    text = base + (f".{fraction[:6].ljust(6, '0')}" if fraction else "")
    try:
        return datetime.fromisoformat(text + ("+00:00" if zone == "Z" else zone))
    except ValueError:
        return None


def format_timestamp(epoch: float) -> str:
    """``epoch`` seconds as the context object shows times: milliseconds and ``Z``."""
    moment = datetime.fromtimestamp(epoch, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
