"""The ``.waitForTaskToken`` callback pattern: what the interpreter needs from its host.

A Task whose Resource ends in ``.waitForTaskToken`` gets a token in
``$$.Task.Token``, invokes its resource (whose result is ignored, as on AWS)
and then waits until somebody reports the task's outcome for that token
(``SendTaskSuccess`` / ``SendTaskFailure`` on AWS). ``TimeoutSeconds`` (or
``TimeoutSecondsPath``) bounds the whole wait and fails it with
``States.Timeout``. The host decides where tokens and outcomes live; the
embedded runner keeps them in its store, so a wait survives a restart.
"""

from __future__ import annotations

from typing import Any, Protocol

__all__ = ["Callbacks", "Parked"]


class Parked(Exception):  # not an error: the execution stops here for now
    """Raised by ``Callbacks.wait`` to stop the execution where it is, without failing it.

    ``execute`` then returns ``PARKED``; resuming from the last checkpoint enters
    the waiting task again, which gets the same token and finds the outcome.
    """

    def __init__(self, token: str) -> None:
        super().__init__(f"waiting for the outcome of task token {token[:8]}...")
        self.token = token


class Callbacks(Protocol):
    async def token(self, path: str, attempt: int) -> str:
        """The token of this entry (``path``, retry ``attempt``) of a callback task; the
        same token again when the same entry is run again after a resume."""

    async def wait(self, token: str, limit: float | None) -> Any:
        """The output reported for ``token``. Raises StatesError for a reported failure,
        ``States.Timeout`` once ``limit`` seconds have passed since the token was first
        made, or Parked to stop the execution for now."""
