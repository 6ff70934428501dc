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
