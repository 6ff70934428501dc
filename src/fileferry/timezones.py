"""Time-zone names in settings: one validator for every ``timezone:`` key.

``TimeZoneName`` is a ``str`` that must name an IANA zone known to this machine's
tz database (``Europe/Berlin``, ``UTC``); anything else (``CET+1``, ``Mars/Base``,
a path such as ``../etc``) is refused with the key's name, by pydantic.
"""

from __future__ import annotations

from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator

__all__ = ["TimeZoneName", "check_time_zone"]


def check_time_zone(value: str) -> str:
    """``value`` unchanged if ``ZoneInfo`` knows it; ``ValueError`` saying what to use."""
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):  # ValueError: not a zone key at all
        raise ValueError(f"unknown time zone {value!r}; use an IANA name such as "
                         "Europe/Berlin or UTC") from None
    return value


TimeZoneName = Annotated[str, AfterValidator(check_time_zone)]
