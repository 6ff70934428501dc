"""What one file's attempts have achieved: digest snapshots at offsets the server confirmed.

``Boundaries`` turns the snapshots hashing produces (every ``hashing.STEP``
bytes) into checkpoints once the writer reports every byte before them as
acknowledged; ``ResumeState.resume_from`` then continues from the latest
checkpoint at or below what the server holds.
"""

from __future__ import annotations

import asyncio
from collections import deque

from fileferry.endpoints.base import Writer
from fileferry.transfer.hashing import Digests

__all__ = ["CHECKPOINTS", "Boundaries", "ResumeState", "Snapshots", "hash_after"]

CHECKPOINTS = 256
"""Digest snapshots kept per file (one per ``hashing.STEP``): 64 MiB back, enough to rewind
past what a server had not stored (at most the writes in flight)."""


class ResumeState:
    """What one file's attempts have achieved: digests at confirmed offsets."""

    def __init__(self) -> None:
        self.started = False
        self.sent = False
        self.expected: dict[str, str] = {}
        self.reset()

    def reset(self) -> None:
        self.digests = Digests()
        self.sent = False
        self.checkpoints: deque[Digests] = deque(maxlen=CHECKPOINTS)

    def checkpoint(self) -> None:
        self.checkpoints.append(self.digests.copy())

    def resume_from(self, confirmed: int) -> int:
        """Continue from the latest checkpoint at or before ``confirmed`` bytes."""
        while self.checkpoints and self.checkpoints[-1].size > confirmed:
            self.checkpoints.pop()
        if not self.checkpoints:
            self.reset()
            return 0
        self.digests = self.checkpoints[-1].copy()
        return self.digests.size


Snapshots = list[tuple[int, Digests]]


async def hash_after(previous: asyncio.Future[Snapshots] | None, digests: Digests,
                      chunk: bytes) -> Snapshots:
    """Hash ``chunk`` once ``previous`` has (order matters); return snapshots within it."""
    if previous is not None:
        await asyncio.shield(previous)
    return await digests.snapshots_async(chunk)


class Boundaries:
    """Hashes under way, and hashed boundaries waiting for the server to confirm them."""

    def __init__(self, state: ResumeState, writer: Writer) -> None:
        self._state = state
        self._writer = writer
        self._queued: deque[tuple[int, asyncio.Future[Snapshots]]] = deque()
        self._hashed: deque[tuple[int, Digests]] = deque()

    def add(self, start: int, hashing: asyncio.Future[Snapshots]) -> None:
        self._queued.append((start, hashing))

    async def settle(self, keep_one: bool) -> None:
        """Collect finished hashes (all of them unless ``keep_one`` may stay running)."""
        queued = self._queued
        while queued and (not keep_one or queued[0][1].done() or len(queued) > 1):
            start, done = queued.popleft()
            self._keep(start, await done)
        self.confirm()

    def settle_done(self) -> None:
        """After a failure: keep what was hashed without error, confirm what can be."""
        queued = self._queued
        while queued and queued[0][1].done() and not queued[0][1].cancelled() \
                and queued[0][1].exception() is None:
            start, done = queued.popleft()
            self._keep(start, done.result())
        self.confirm()

    def _keep(self, start: int, snapshots: Snapshots) -> None:
        self._hashed.extend((start + end, snapshot) for end, snapshot in snapshots)

    def confirm(self) -> None:
        while self._hashed and self._hashed[0][0] <= self._writer.acknowledged:
            self._state.checkpoints.append(self._hashed.popleft()[1])
