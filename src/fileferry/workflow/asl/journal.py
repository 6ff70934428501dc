"""Durability and history hooks: the Journal protocol and the Checkpoint it stores.

State paths name a state wherever it sits: ``Copy`` at the top level,
``Files/2/Copy`` inside iteration 2 of the Map ``Files``, ``Both/0/Copy``
inside branch 0 of the Parallel ``Both``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

__all__ = ["Checkpoint", "Journal", "NullJournal"]


@dataclass
class Checkpoint:
    """Where an execution can resume: the next top-level state and its raw input.

    ``next_state`` None means the execution succeeded with ``input`` as output.
    ``map_items`` holds, per Map path, the outputs of iterations already done;
    on resume those iterations are not run again. Everything is JSON data.
    """

    next_state: str | None
    input: Any
    map_items: dict[str, dict[int, Any]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (iteration indices become strings)."""
        return {"next_state": self.next_state, "input": self.input,
                "map_items": {path: {str(i): out for i, out in items.items()}
                              for path, items in self.map_items.items()}}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Checkpoint:
        """The inverse of ``to_dict``; a missing ``map_items`` means none."""
        items = data.get("map_items") or {}
        return cls(data["next_state"], data.get("input"),
                   {path: {int(i): out for i, out in done.items()}
                    for path, done in items.items()})


class Journal(Protocol):
    """Durability and history hooks; every method may be a no-op.

    They are awaited inline, so a slow journal slows the execution; an
    exception raised by a hook ends the execution with that exception.
    """

    async def entered(self, path: str, state: str, input: Any, when: float) -> None:
        """A state was entered with its raw ``input`` (once per entry, not per retry)."""

    async def exited(self, path: str, state: str, output: Any, when: float) -> None:
        """A state finished normally with ``output`` (not called when Catch handles an error)."""

    async def retrying(self, path: str, state: str, error: str, cause: str, attempt: int,
                       delay: float, when: float) -> None:
        """Retry number ``attempt`` (from 1) of ``state`` starts after ``delay`` seconds."""

    async def failed(self, path: str, state: str, error: str, cause: str, when: float) -> None:
        """A state failed after its retries; a Catch may still handle the error."""

    async def checkpoint(self, cp: Checkpoint) -> None:
        """Called on every top-level transition with the next state and its raw input.

        ``cp.map_items`` is empty except on the first checkpoint of a resumed
        execution, where it repeats the resumed items. Items recorded through
        ``map_item_done`` before this call belong to a finished state and may
        be dropped; later ones should be added to ``cp.map_items`` (``cp`` is
        the journal's to keep and modify).
        """

    async def map_item_done(self, path: str, index: int, output: Any) -> None:
        """Iteration ``index`` of the inline Map at ``path`` (e.g. ``Outer/2/Inner``) finished."""


class NullJournal:
    """A Journal that records nothing."""

    async def entered(self, path: str, state: str, input: Any, when: float) -> None:
        return None

    async def exited(self, path: str, state: str, output: Any, when: float) -> None:
        return None

    async def retrying(self, path: str, state: str, error: str, cause: str, attempt: int,
                       delay: float, when: float) -> None:
        return None

    async def failed(self, path: str, state: str, error: str, cause: str, when: float) -> None:
        return None

    async def checkpoint(self, cp: Checkpoint) -> None:
        return None

    async def map_item_done(self, path: str, index: int, output: Any) -> None:
        return None
