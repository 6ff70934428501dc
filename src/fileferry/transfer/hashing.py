"""SHA-256 and MD5 computed while the bytes stream past."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterable

__all__ = ["Digests", "digest_stream"]

_THREAD_MIN = 256 * 1024


class Digests:
    """Both digests of one byte stream, fed chunk by chunk."""

    def __init__(self) -> None:
        self._md5 = hashlib.md5(usedforsecurity=False)
        self._sha256 = hashlib.sha256()
        self.size = 0

    def copy(self) -> Digests:
        twin = Digests.__new__(Digests)
        twin._md5 = self._md5.copy()
        twin._sha256 = self._sha256.copy()
        twin.size = self.size
        return twin

    def update(self, data: bytes) -> None:
        self._md5.update(data)
        self._sha256.update(data)
        self.size += len(data)

    async def update_async(self, data: bytes) -> None:
        """Hash a large chunk off the event loop (hashlib releases the GIL)."""
        if len(data) >= _THREAD_MIN:
            await asyncio.to_thread(self.update, data)
        else:
            self.update(data)

    @property
    def md5(self) -> str:
        return self._md5.hexdigest()

    @property
    def sha256(self) -> str:
        return self._sha256.hexdigest()


async def digest_stream(chunks: AsyncIterable[bytes]) -> Digests:
    digests = Digests()
    async for chunk in chunks:
        await digests.update_async(chunk)
    return digests
