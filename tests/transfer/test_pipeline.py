"""One file's inner loop: hashing overlaps writing, checkpoints stay confirmed, opens undo.

Unit tests with stand-in endpoints (no servers): they pin down the properties
resuming relies on. A checkpoint (the digests at a chunk boundary) exists only
for bytes the destination acknowledged, its digests are exactly those of that
prefix, and no hashing is left running once a file's attempt has ended.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator

import pytest

from fileferry.endpoints.base import ObjectInfo
from fileferry.errors import EndpointUnavailable, PermissionDenied, SourceNotFound
from fileferry.models import FilePlan
from fileferry.transfer.copy import ResumeState, _open_both, _stream
from fileferry.transfer.hashing import STEP
from fileferry.transfer.progress import Broadcast

CHUNK = 300 * 1024  # above hashing's thread threshold: each hash runs in a worker thread


def chunks(count: int) -> list[bytes]:
    return [bytes([i]) * CHUNK for i in range(count)]


class Stream:
    def __init__(self, parts: list[bytes]) -> None:
        self.parts = parts
        self.info = ObjectInfo("k", sum(len(p) for p in parts))
        self.closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for part in self.parts:
            yield part

    async def aclose(self) -> None:
        self.closed = True


class Writer:
    def __init__(self, fail_on: int | None = None) -> None:
        self.fail_on = fail_on
        self.acknowledged = 0
        self.writes = 0
        self.aborted = False

    async def write(self, data: bytes) -> None:
        self.writes += 1
        await asyncio.sleep(0.001)
        if self.writes == self.fail_on:
            raise EndpointUnavailable("connection lost")
        self.acknowledged += len(data)

    async def commit(self) -> None:
        pass

    async def abort(self) -> None:
        self.aborted = True


PLAN = FilePlan(source="s3://b/k", bucket="b", key="k", size=0, destination="/d/k")


def prefix_sha256(parts: list[bytes], size: int) -> str:
    return hashlib.sha256(b"".join(parts)[:size]).hexdigest()


async def test_every_chunk_is_hashed_in_order_and_checkpointed() -> None:
    parts = chunks(7)
    state = ResumeState()
    await _stream(Stream(parts), Writer(), PLAN, state, Broadcast([]))
    whole = b"".join(parts)
    assert state.digests.size == len(whole)
    assert state.digests.sha256 == hashlib.sha256(whole).hexdigest()
    assert state.digests.md5 == hashlib.md5(whole, usedforsecurity=False).hexdigest()
    # A checkpoint every STEP within each chunk and at its end, each of exactly that prefix.
    assert [c.size for c in state.checkpoints] == [
        CHUNK * n + end for n in range(7) for end in (*range(STEP, CHUNK, STEP), CHUNK)]
    assert all(c.sha256 == prefix_sha256(parts, c.size) for c in state.checkpoints)


@pytest.mark.parametrize("fail_on", [1, 2, 5])
async def test_a_failed_write_leaves_only_confirmed_checkpoints(fail_on: int) -> None:
    parts = chunks(7)
    state, writer = ResumeState(), Writer(fail_on=fail_on)
    with pytest.raises(EndpointUnavailable):
        await _stream(Stream(parts), writer, PLAN, state, Broadcast([]))
    assert writer.acknowledged == CHUNK * (fail_on - 1)
    sizes = [c.size for c in state.checkpoints]
    confirmed = [CHUNK * n + end for n in range(fail_on - 1)
                 for end in (*range(STEP, CHUNK, STEP), CHUNK)]
    assert sizes == confirmed[-len(sizes):] if sizes else True
    assert all(size <= writer.acknowledged for size in sizes)
    assert all(c.sha256 == prefix_sha256(parts, c.size) for c in state.checkpoints)
    # No hashing outlives the attempt.
    others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    assert not [t for t in others if "hash_after" in repr(t)]
    # Resuming picks the last checkpoint at or below what the server holds.
    assert state.resume_from(writer.acknowledged) == (sizes[-1] if sizes else 0)


class Source:
    def __init__(self, error: Exception | None = None) -> None:
        self.error = error
        self.stream = Stream(chunks(1))

    async def open_range(self, bucket: str, key: str, start: int = 0,
                         end: int | None = None) -> Stream:
        await asyncio.sleep(0.01)
        if self.error:
            raise self.error
        return self.stream


class Dest:
    def __init__(self, error: Exception | None = None) -> None:
        self.error = error
        self.writer = Writer()

    async def open_write(self, path: str, offset: int = 0, size: int | None = None,
                         digest: str | None = None) -> Writer:
        if self.error:
            raise self.error
        return self.writer


async def test_opening_both_returns_both() -> None:
    source, dest = Source(), Dest()
    writer, stream = await _open_both(source, dest, PLAN, "/d/.k.tmp", 0)  # type: ignore[arg-type]
    assert writer is dest.writer and stream is source.stream and not stream.closed


async def test_a_refusal_at_the_destination_closes_the_get() -> None:
    source, dest = Source(), Dest(PermissionDenied("no"))
    with pytest.raises(PermissionDenied):
        await _open_both(source, dest, PLAN, "/d/.k.tmp", 0)  # type: ignore[arg-type]
    assert source.stream.closed


async def test_a_failed_get_aborts_the_open_file() -> None:
    source, dest = Source(SourceNotFound("gone")), Dest()
    with pytest.raises(SourceNotFound):
        await _open_both(source, dest, PLAN, "/d/.k.tmp", 0)  # type: ignore[arg-type]
    assert dest.writer.aborted


async def test_the_destination_error_wins_when_both_fail() -> None:
    source, dest = Source(SourceNotFound("gone")), Dest(PermissionDenied("no"))
    with pytest.raises(PermissionDenied):
        await _open_both(source, dest, PLAN, "/d/.k.tmp", 0)  # type: ignore[arg-type]
