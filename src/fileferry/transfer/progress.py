"""Progress goes to subscribers: one stream of events for the CLI, the store, the dashboard."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from fileferry.models import FilePlan, FileResult

__all__ = ["Broadcast", "ProgressSubscriber"]


class ProgressSubscriber(Protocol):
    def file_started(self, plan: FilePlan) -> None: ...

    def bytes_moved(self, plan: FilePlan, count: int) -> None: ...

    def file_retrying(self, plan: FilePlan, attempt: int, error: str) -> None:
        """Attempt ``attempt`` failed with a retryable error; another follows after a pause."""

    def file_resumed(self, plan: FilePlan, offset: int) -> None:
        """A retry continues from ``offset``, the last byte the destination confirmed."""

    def file_finished(self, result: FileResult) -> None: ...


class Broadcast:
    """Fans each event out to every subscriber."""

    def __init__(self, subscribers: Sequence[ProgressSubscriber] = ()) -> None:
        self._subscribers = list(subscribers)

    def file_started(self, plan: FilePlan) -> None:
        for sub in self._subscribers:
            sub.file_started(plan)

    def bytes_moved(self, plan: FilePlan, count: int) -> None:
        for sub in self._subscribers:
            sub.bytes_moved(plan, count)

    def file_retrying(self, plan: FilePlan, attempt: int, error: str) -> None:
        for sub in self._subscribers:
            sub.file_retrying(plan, attempt, error)

    def file_resumed(self, plan: FilePlan, offset: int) -> None:
        for sub in self._subscribers:
            sub.file_resumed(plan, offset)

    def file_finished(self, result: FileResult) -> None:
        for sub in self._subscribers:
            sub.file_finished(result)
