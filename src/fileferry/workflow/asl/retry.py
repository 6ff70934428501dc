"""``Retry`` and ``Catch``: parsing, and choosing what happens after an error.

The retry rule follows AWS: the *first* retrier whose ``ErrorEquals`` matches
decides. Its attempt counter is its own, shared by every error it matches and
reset when the state is entered again. When that retrier is exhausted, later
retriers are not tried; the error goes to ``Catch``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fileferry.workflow.asl.errors import ALL, KNOWN_STATES_ERRORS, StatesError, error_matches
from fileferry.workflow.asl.fields import MISSING, Fields
from fileferry.workflow.asl.paths import ReferencePath

__all__ = ["Catcher", "Retrier", "find_catcher", "next_delay", "parse_catch", "parse_retry"]

MAX_DELAY_LIMIT = 31_622_401  # a year and a second, as AWS allows


@dataclass(frozen=True)
class Retrier:
    error_equals: tuple[str, ...]
    interval_seconds: int = 1
    max_attempts: int = 3
    backoff_rate: float = 2.0
    max_delay_seconds: int | None = None
    full_jitter: bool = False

    def delay(self, attempt: int, random: Callable[[], float]) -> float:
        """Seconds to wait before retry number ``attempt + 1`` (``attempt`` from 0)."""
        delay = self.interval_seconds * self.backoff_rate ** attempt
        if self.max_delay_seconds is not None:
            delay = min(delay, float(self.max_delay_seconds))
        return random() * delay if self.full_jitter else float(delay)


@dataclass(frozen=True)
class Catcher:
    error_equals: tuple[str, ...]
    next: str
    result_path: ReferencePath | None  # None: JSON null, the raw input is kept


def _error_equals(fields: Fields, last: bool) -> tuple[str, ...]:
    names = fields.array("ErrorEquals", required=True) or []
    for i, name in enumerate(names):
        where = f"ErrorEquals[{i}]"
        if not isinstance(name, str) or not name:
            raise fields.error(where, f"must be a non-empty string, got {name!r}")
        if name.startswith("States.") and name not in KNOWN_STATES_ERRORS:
            raise fields.error(where, f"{name!r} is not an ASL error name "
                                      "(custom names must not start with 'States.')")
        if name == ALL and (len(names) > 1 or not last):
            raise fields.error(where, "States.ALL must be alone in the last retrier or catcher")
    return tuple(names)


def _retrier(raw: Any, where: str, last: bool) -> Retrier:
    fields = Fields(raw, where)
    names = _error_equals(fields, last)
    interval = fields.integer("IntervalSeconds", 1)
    attempts = fields.integer("MaxAttempts", 0)
    rate = fields.get("BackoffRate")
    if rate is MISSING:
        rate = 2.0
    if not isinstance(rate, (int, float)) or isinstance(rate, bool):
        raise fields.error("BackoffRate", f"must be a number, got {rate!r}")
    if rate < 1.0:
        raise fields.error("BackoffRate", "must be >= 1.0")
    max_delay = fields.integer("MaxDelaySeconds", 1, MAX_DELAY_LIMIT)
    jitter = fields.get("JitterStrategy")
    if jitter not in (MISSING, "FULL", "NONE"):
        raise fields.error("JitterStrategy", f"must be FULL or NONE, got {jitter!r}")
    fields.get("Comment")
    fields.finish()
    return Retrier(names, 1 if interval is None else interval,
                   3 if attempts is None else attempts,
                   float(rate), max_delay, jitter == "FULL")


def _catcher(raw: Any, where: str, last: bool) -> Catcher:
    fields = Fields(raw, where)
    names = _error_equals(fields, last)
    target = fields.string("Next", required=True)
    assert target is not None
    result_path = fields.result_path()
    fields.get("Comment")
    fields.finish()
    return Catcher(names, target, result_path)


def parse_retry(state: Fields) -> tuple[Retrier, ...]:
    """The state's ``Retry`` list (empty when absent)."""
    raw = state.array("Retry") or []
    return tuple(_retrier(item, state.at(f"Retry[{i}]"), i == len(raw) - 1)
                 for i, item in enumerate(raw))


def parse_catch(state: Fields) -> tuple[Catcher, ...]:
    """The state's ``Catch`` list (empty when absent)."""
    raw = state.array("Catch") or []
    return tuple(_catcher(item, state.at(f"Catch[{i}]"), i == len(raw) - 1)
                 for i, item in enumerate(raw))


def next_delay(retriers: tuple[Retrier, ...], used: list[int], error: StatesError,
               random: Callable[[], float]) -> float | None:
    """The delay before retrying ``error``, counting the attempt in ``used``; None: no retry.

    ``used[i]`` is how many retries retrier ``i`` has spent in this entry of the
    state. Terminal errors are never retried.
    """
    for i, retrier in enumerate(retriers):
        if error_matches(retrier.error_equals, error.error):
            if used[i] >= retrier.max_attempts:
                return None
            delay = retrier.delay(used[i], random)
            used[i] += 1
            return delay
    return None


def find_catcher(catchers: tuple[Catcher, ...], error: StatesError) -> Catcher | None:
    """The first catcher matching ``error``; None for terminal errors or no match."""
    return next((c for c in catchers if error_matches(c.error_equals, error.error)), None)
