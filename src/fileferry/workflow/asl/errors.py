"""Errors of the ASL interpreter, and how ``ErrorEquals`` matches them.

Two families, never mixed::

    AslDefinitionError (ValueError)     the definition is wrong; raised by StateMachine.load
    StatesError (Exception)             a runtime ASL error: {Error, Cause}
    └── TaskFailed                      what a task raises to fail with an explicit name

Any other exception a task raises becomes ``StatesError(type(exc).__name__,
str(exc))``, so FileFerry's error classes (named after their ASL error names)
read the same in ``Retry``/``Catch`` as in the code.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = [
    "ALL",
    "BRANCH_FAILED",
    "DATA_LIMIT_EXCEEDED",
    "INTRINSIC_FAILURE",
    "KNOWN_STATES_ERRORS",
    "NO_CHOICE_MATCHED",
    "RESULT_PATH_MATCH_FAILURE",
    "RUNTIME",
    "TASK_FAILED",
    "TERMINAL_ERRORS",
    "TIMEOUT",
    "AslDefinitionError",
    "StatesError",
    "TaskFailed",
    "error_matches",
]

ALL = "States.ALL"
TIMEOUT = "States.Timeout"
TASK_FAILED = "States.TaskFailed"
RUNTIME = "States.Runtime"
DATA_LIMIT_EXCEEDED = "States.DataLimitExceeded"
RESULT_PATH_MATCH_FAILURE = "States.ResultPathMatchFailure"
NO_CHOICE_MATCHED = "States.NoChoiceMatched"
INTRINSIC_FAILURE = "States.IntrinsicFailure"
BRANCH_FAILED = "States.BranchFailed"

# Neither retried nor caught, whatever the Retry/Catch says.
TERMINAL_ERRORS = frozenset({RUNTIME, DATA_LIMIT_EXCEEDED})

# The only "States." names a definition may use in ErrorEquals.
KNOWN_STATES_ERRORS = frozenset({
    ALL, TIMEOUT, TASK_FAILED, RUNTIME, DATA_LIMIT_EXCEEDED, RESULT_PATH_MATCH_FAILURE,
    NO_CHOICE_MATCHED, INTRINSIC_FAILURE, BRANCH_FAILED, "States.HeartbeatTimeout",
    "States.Permissions", "States.ParameterPathFailure", "States.QueryEvaluationError",
    "States.ExceedToleratedFailureThreshold", "States.ItemReaderFailed",
    "States.ResultWriterFailed",
})


class AslDefinitionError(ValueError):
    """The definition cannot be run; the message starts with the offending field.

    For example ``States.Copy.Retry[0].BackoffRate: must be >= 1.0``.
    """


class StatesError(Exception):
    """A runtime ASL error with its ``Error`` name and ``Cause`` text."""

    def __init__(self, error: str, cause: str = "") -> None:
        super().__init__(f"{error}: {cause}" if cause else error)
        self.error = error
        self.cause = cause

    @property
    def terminal(self) -> bool:
        """True for ``States.Runtime`` and ``States.DataLimitExceeded``: never retried or caught."""
        return self.error in TERMINAL_ERRORS


class TaskFailed(StatesError):
    """Raised by a task to fail with an explicit ASL error name (``Error``) and ``Cause``."""


def error_matches(error_equals: Iterable[str], error: str) -> bool:
    """Whether one retrier's or catcher's ``ErrorEquals`` matches ``error``.

    Matching is exact and case-sensitive. ``States.ALL`` matches everything and
    ``States.TaskFailed`` everything but ``States.Timeout`` (as AWS documents it;
    LocalStack is narrower). Terminal errors never match anything.
    """
    if error in TERMINAL_ERRORS:
        return False
    for name in error_equals:
        if name in (error, ALL):
            return True
        if name == TASK_FAILED and error != TIMEOUT:
            return True
    return False
