"""The contract every destination passes, whatever its protocol.

A test module binds it to a real server by subclassing ``DestinationContract``
and providing a ``destination`` fixture: a connected destination whose root is
a fresh, empty directory.
"""

from __future__ import annotations

import hashlib
import posixpath

import pytest

from fileferry.endpoints.base import Destination
from fileferry.errors import TargetExists
from fileferry.transfer.hashing import digest_stream


async def put(dest: Destination, path: str, data: bytes, offset: int = 0) -> None:
    writer = await dest.open_write(path, offset)
    await writer.write(data)
    await writer.commit()


async def get(dest: Destination, path: str) -> bytes:
    return b"".join([chunk async for chunk in dest.open_read(path)])


def at(dest: Destination, *parts: str) -> str:
    return posixpath.join(dest.root, *parts)


class DestinationContract:
    async def test_stat_of_missing_file_is_none(self, destination: Destination) -> None:
        assert await destination.stat(at(destination, "nope.bin")) is None

    async def test_write_commit_stat_read(self, destination: Destination) -> None:
        data = bytes(range(256)) * 1000
        await put(destination, at(destination, "a.bin"), data)
        info = await destination.stat(at(destination, "a.bin"))
        assert info is not None and info.size == len(data)
        assert await get(destination, at(destination, "a.bin")) == data

    async def test_empty_file(self, destination: Destination) -> None:
        writer = await destination.open_write(at(destination, "empty"))
        await writer.commit()
        info = await destination.stat(at(destination, "empty"))
        assert info is not None and info.size == 0

    async def test_names_with_spaces_and_non_ascii(self, destination: Destination) -> None:
        path = at(destination, "Übersicht März 2026.csv")
        await put(destination, path, "ä,ö\n".encode())
        assert await get(destination, path) == "ä,ö\n".encode()

    async def test_open_write_truncates(self, destination: Destination) -> None:
        path = at(destination, "t.txt")
        await put(destination, path, b"a long first version")
        await put(destination, path, b"short")
        assert await get(destination, path) == b"short"

    async def test_offset_write_keeps_earlier_bytes(self, destination: Destination) -> None:
        if not destination.capabilities.supports_offset_writes:
            pytest.skip("no offset writes")
        path = at(destination, "o.bin")
        await put(destination, path, b"0123456789")
        await put(destination, path, b"AB", offset=4)
        assert await get(destination, path) == b"0123AB6789"

    async def test_makedirs_nested_and_existing(self, destination: Destination) -> None:
        path = at(destination, "x", "y", "z")
        await destination.makedirs(path)
        await destination.makedirs(path)
        await put(destination, posixpath.join(path, "f"), b"1")
        assert await destination.stat(posixpath.join(path, "f")) is not None

    async def test_rename_without_overwrite_refuses_existing(self,
                                                             destination: Destination) -> None:
        src, dst = at(destination, "src"), at(destination, "dst")
        await put(destination, src, b"new")
        await put(destination, dst, b"old")
        with pytest.raises(TargetExists):
            await destination.rename(src, dst, overwrite=False)
        assert await get(destination, dst) == b"old"
        assert await get(destination, src) == b"new"

    async def test_rename_with_overwrite_replaces(self, destination: Destination) -> None:
        src, dst = at(destination, "src2"), at(destination, "dst2")
        await put(destination, src, b"new")
        await put(destination, dst, b"old")
        await destination.rename(src, dst, overwrite=True)
        assert await get(destination, dst) == b"new"
        assert await destination.stat(src) is None

    async def test_rename_to_free_name(self, destination: Destination) -> None:
        src, dst = at(destination, "s3"), at(destination, "d3")
        await put(destination, src, b"x")
        await destination.rename(src, dst, overwrite=False)
        assert await destination.stat(src) is None
        assert await get(destination, dst) == b"x"

    async def test_remove_and_remove_missing(self, destination: Destination) -> None:
        path = at(destination, "gone")
        await put(destination, path, b"x")
        await destination.remove(path)
        assert await destination.stat(path) is None
        await destination.remove(path)

    async def test_server_digests_match_local(self, destination: Destination) -> None:
        path = at(destination, "digest me.bin")
        data = b"fileferry" * 12345
        await put(destination, path, data)
        if not destination.capabilities.hashes:
            pytest.skip("this account cannot compute digests on the server")
        for algo in destination.capabilities.hashes:
            assert await destination.digest(path, algo) == hashlib.new(algo, data).hexdigest()

    async def test_readback_digest(self, destination: Destination) -> None:
        path = at(destination, "rb.bin")
        data = b"\x00\xff" * 300_000
        await put(destination, path, data)
        digests = await digest_stream(destination.open_read(path))
        assert digests.sha256 == hashlib.sha256(data).hexdigest()
        assert digests.size == len(data)
