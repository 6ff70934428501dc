"""Retries with exponential backoff and jitter, for the errors that say trying again helps."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
    wait_random,
)

from fileferry.config import DestinationSettings
from fileferry.errors import FileFerryError

__all__ = ["RetryPolicy", "is_retryable"]

Sleep = Callable[[float], Awaitable[None]]


def is_retryable(exc: BaseException) -> bool:
    return isinstance(exc, FileFerryError) and exc.retryable


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 3
    backoff: float = 1.0
    max_backoff: float = 30.0
    sleep: Sleep | None = None
    """Injected in tests; asyncio.sleep otherwise."""

    @classmethod
    def for_destination(cls, settings: DestinationSettings,
                        sleep: Sleep | None = None) -> RetryPolicy:
        return cls(settings.retry_attempts, settings.retry_backoff, settings.retry_max_backoff,
                   sleep)

    def retrying(self, before_sleep: Callable[[RetryCallState], None] | None = None
                 ) -> AsyncRetrying:
        """``async for attempt in policy.retrying(): with attempt: ...``; re-raises the last."""
        return AsyncRetrying(
            stop=stop_after_attempt(self.attempts),
            wait=(wait_exponential(multiplier=self.backoff, max=self.max_backoff)
                  + wait_random(0, self.backoff)),
            retry=retry_if_exception(is_retryable),
            before_sleep=before_sleep,
            reraise=True,
            sleep=self.sleep or asyncio.sleep,
        )
