"""Task tokens in the store: the embedded runner's ``SendTaskSuccess`` / ``SendTaskFailure``.

Each entry of a callback task gets one token, recorded once per execution,
state path and attempt, so a resumed execution waits on the same token. An
outcome is recorded once (``record_once``): the first of success, failure or
timeout wins, and a late approval after a timeout is refused, never applied.

``StoreCallbacks.wait`` polls the store every ``poll`` seconds (real time;
its deadline is by the injected clock and counts from when the token was
made, across restarts). With ``park=True`` it does not wait at all: when no
outcome is there yet it raises ``Parked`` and the runner returns ``PARKED``.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable
from typing import Any

from fileferry.store import Store
from fileferry.workflow.asl import Parked, StatesError
from fileferry.workflow.asl.errors import TIMEOUT

__all__ = ["POLL_SECONDS", "StoreCallbacks", "send_task_failure", "send_task_success",
           "task_outcome"]

POLL_SECONDS = 1.0
KEYS = "callback"  # execution|path|attempt -> {callback_id, created_at}
OUTCOMES = "callback_outcome"  # callback_id -> {status, output | error, cause}


async def send_task_success(store: Store, token: str, output: Any) -> bool:
    """Report success; False when an outcome (success, failure, timeout) was there first."""
    first, _ = await store.record_once(OUTCOMES, token, {"status": "SUCCEEDED",
                                                         "output": output})
    return first


async def send_task_failure(store: Store, token: str, error: str, cause: str) -> bool:
    """Report failure with an ASL error name; False when an outcome was there first."""
    first, _ = await store.record_once(OUTCOMES, token, {"status": "FAILED", "error": error,
                                                         "cause": cause})
    return first


async def task_outcome(store: Store, token: str) -> dict[str, Any] | None:
    return await store.recorded(OUTCOMES, token)


def _result(outcome: dict[str, Any], limit: float | None) -> Any:
    if outcome["status"] == "SUCCEEDED":
        return outcome.get("output")
    if outcome["status"] == "TIMED_OUT":
        raise StatesError(TIMEOUT, f"no outcome was reported within {limit} seconds")
    raise StatesError(str(outcome.get("error") or "States.TaskFailed"),
                      str(outcome.get("cause") or ""))


class StoreCallbacks:
    """The interpreter's ``Callbacks`` for one execution, kept in the store."""

    def __init__(self, store: Store, execution_id: str, *,
                 clock: Callable[[], float] = time.time, park: bool = False,
                 poll: float = POLL_SECONDS) -> None:
        self._store = store
        self._execution = execution_id
        self._clock = clock
        self._park = park
        self._poll = poll

    async def token(self, path: str, attempt: int) -> str:
        fresh = {"callback_id": "cb-" + secrets.token_urlsafe(24), "created_at": self._clock()}
        _, kept = await self._store.record_once(KEYS, f"{self._execution}|{path}|{attempt}",
                                                fresh)
        await self._store.record_once("callback_created", str(kept["callback_id"]),
                                      {"created_at": kept["created_at"]})
        return str(kept["callback_id"])

    async def wait(self, token: str, limit: float | None) -> Any:
        created = await self._store.recorded("callback_created", token)
        started = float(created["created_at"]) if created else self._clock()
        while True:
            outcome = await task_outcome(self._store, token)
            if outcome is not None:
                return _result(outcome, limit)
            left = None if limit is None else started + limit - self._clock()
            if left is not None and left <= 0:
                _, outcome = await self._store.record_once(OUTCOMES, token,
                                                           {"status": "TIMED_OUT"})
                return _result(outcome, limit)  # or what was reported just before
            if self._park:
                raise Parked(token)
            await asyncio.sleep(self._poll if left is None else min(self._poll, left))
