"""Server-side digests through the persistent shell, and sized read-back, against sshd."""

from __future__ import annotations

import asyncio
import hashlib
import posixpath
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from fileferry.config import Settings
from fileferry.endpoints.registry import connect_destination
from fileferry.endpoints.sftp import SftpDestination
from fileferry.errors import DestinationError
from tests.conftest import sftp_destination
from tests.servers.sshd import SshdServer

SettingsFor = Callable[..., Settings]
NAMES = ["plain.bin", "with space.bin", "quote'd \"x\".bin", "new\nline.bin", "back\\slash.bin",
         "-dash.bin", "$(touch pwned).bin"]


@pytest.fixture
async def dest(settings_for: SettingsFor, sshd: SshdServer,
               remote_dir: Path) -> AsyncIterator[SftpDestination]:
    settings = settings_for({"t": sftp_destination(sshd, remote_dir)})
    conn = await connect_destination("t", settings.destinations["t"], settings.transfer)
    assert isinstance(conn, SftpDestination)
    try:
        yield conn
    finally:
        await conn.close()


async def put(dest: SftpDestination, name: str, data: bytes) -> str:
    path = posixpath.join(dest.root, name)
    writer = await dest.open_write(path)
    await writer.write(data)
    await writer.commit()
    return path


def shells(dest: SftpDestination) -> list[Any]:
    return [s.shell for s in dest._sessions if s.shell is not None]


async def test_digests_of_awkward_names_through_one_shell(dest: SftpDestination,
                                                          remote_dir: Path) -> None:
    for i, name in enumerate(NAMES):
        data = bytes([i]) * (1000 + i)
        path = await put(dest, name, data)
        assert await dest.digest(path, "md5") == hashlib.md5(
            data, usedforsecurity=False).hexdigest()
        assert await dest.digest(path, "sha256") == hashlib.sha256(data).hexdigest()
    assert len(shells(dest)) == 1, "one persistent shell served every digest"
    assert not (remote_dir / "pwned").exists()


async def test_concurrent_digests_are_each_right(dest: SftpDestination) -> None:
    blobs = {f"c{i}.bin": bytes([i]) * (50_000 + i) for i in range(8)}
    paths = {name: await put(dest, name, data) for name, data in blobs.items()}
    await dest.digest(paths["c0.bin"], "md5")  # the shell exists
    got = await asyncio.gather(*(dest.digest(paths[n], "md5") for n in blobs))
    assert got == [hashlib.md5(d, usedforsecurity=False).hexdigest() for d in blobs.values()]
    assert len(shells(dest)) == 1, "pipelined through one shell, not an exec each"


async def test_a_missing_file_fails_and_the_shell_carries_on(dest: SftpDestination) -> None:
    with pytest.raises(DestinationError, match="md5sum"):
        await dest.digest(posixpath.join(dest.root, "missing.bin"), "md5")
    path = await put(dest, "after.bin", b"still works")
    assert await dest.digest(path, "md5") == hashlib.md5(
        b"still works", usedforsecurity=False).hexdigest()


async def test_a_dead_shell_falls_back_to_an_exec(dest: SftpDestination) -> None:
    path = await put(dest, "a.bin", b"abc")
    await dest.digest(path, "md5")
    (shell,) = shells(dest)
    shell._process.close()  # the shell goes away under our feet
    await asyncio.sleep(0.05)
    assert await dest.digest(path, "md5") == hashlib.md5(
        b"abc", usedforsecurity=False).hexdigest()
    assert shell.broken


async def test_a_cancelled_digest_does_not_confuse_the_next(dest: SftpDestination) -> None:
    path = await put(dest, "big.bin", b"x" * (32 * 1024 * 1024))
    await dest.digest(path, "md5")  # the shell exists
    (shell,) = shells(dest)
    task = asyncio.ensure_future(dest.digest(path, "sha256"))
    for _ in range(5):  # the request is out; hashing 32 MiB takes far longer than this
        await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # The late sha256 answer is read and dropped: the next request gets its own answer.
    assert await dest.digest(path, "md5") == hashlib.md5(
        b"x" * (32 * 1024 * 1024), usedforsecurity=False).hexdigest()
    assert shells(dest) == [shell] and not shell.broken


@pytest.mark.parametrize("size", [0, 1, 65_536, 4 * 1024 * 1024 + 1])
async def test_read_back_is_exact(dest: SftpDestination, size: int) -> None:
    data = bytes(range(256)) * (size // 256) + bytes(size % 256)
    path = await put(dest, f"r{size}.bin", data)
    assert b"".join([c async for c in dest.open_read(path)]) == data


FOLLOWED = 40 * 1024 * 1024  # above FOLLOW_MIN: the server hashes while it is written


async def put_followed(dest: SftpDestination, name: str, data: bytes) -> str:
    """Write ``data`` announcing that its MD5 will be asked for."""
    path = posixpath.join(dest.root, name)
    writer = await dest.open_write(path, size=len(data), digest="md5")
    for start in range(0, len(data), 3 * 1024 * 1024):  # pieces that do not line up
        await writer.write(data[start:start + 3 * 1024 * 1024])
    await writer.commit()
    return path


@pytest.mark.parametrize("name", ["followed.bin", "quote'd $(touch pwned) x.bin"])
async def test_a_digest_computed_while_writing(dest: SftpDestination, remote_dir: Path,
                                               name: str) -> None:
    data = bytes(range(256)) * (FOLLOWED // 256) + b"tail"
    path = await put_followed(dest, name, data)
    assert path in dest._streamed, "the server hashed the file while it was written"
    assert await dest.digest(path, "md5") == hashlib.md5(data, usedforsecurity=False).hexdigest()
    assert path not in dest._streamed  # used once; the next digest runs md5sum
    assert await dest.digest(path, "md5") == hashlib.md5(data, usedforsecurity=False).hexdigest()
    assert not (remote_dir / "pwned").exists()


async def test_a_broken_follower_falls_back_to_md5sum(dest: SftpDestination) -> None:
    data = b"\x07" * FOLLOWED
    path = await put_followed(dest, "broken.bin", data)
    follower, _ = dest._streamed[path]
    follower._process.close()  # the exec dies before its answer
    await asyncio.sleep(0.05)
    assert await dest.digest(path, "md5") == hashlib.md5(data, usedforsecurity=False).hexdigest()


async def test_a_rewritten_file_is_hashed_again(dest: SftpDestination) -> None:
    path = await put_followed(dest, "again.bin", b"\x01" * FOLLOWED)
    writer = await dest.open_write(path)  # replaced without a follower
    await writer.write(b"short")
    await writer.commit()
    assert path not in dest._streamed
    assert await dest.digest(path, "md5") == hashlib.md5(b"short",
                                                         usedforsecurity=False).hexdigest()
