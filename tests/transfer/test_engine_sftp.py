"""The engine end to end: moto's S3 server -> OpenSSH's sshd, through ``run_transfer``."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from fileferry.config import Settings
from fileferry.endpoints.s3 import S3Source, S3Stream
from fileferry.errors import SourceError
from fileferry.models import FilePlan, FileResult, TransferResult
from fileferry.transfer.engine import TransferRequest, run_transfer
from tests.conftest import sftp_destination
from tests.servers.sshd import SshdServer

SettingsFor = Callable[..., Settings]


def seed(s3: Any, bucket: str, objects: dict[str, bytes]) -> None:
    for key, body in objects.items():
        s3.put_object(Bucket=bucket, Key=key, Body=body)


def tree(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` (temporary files included), by relative path."""
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


async def send(settings: Settings, *sources: str, dest: str = "t:", source: Any = None,
               subscribers: Any = ()) -> TransferResult:
    return await run_transfer(settings, TransferRequest(sources=sources, destination=dest),
                              subscribers, source=source)


@pytest.fixture
def settings(settings_for: SettingsFor, sshd: SshdServer, remote_dir: Path) -> Settings:
    return settings_for({"t": sftp_destination(sshd, remote_dir)})


OBJECTS = {
    "data/x/y.csv": b"a,b\n1,2\n",
    "data/empty.bin": b"",
    "data/Übersicht März.txt": "grüße\n".encode(),
    "data/big.bin": secrets.token_bytes(3 * 1024 * 1024 + 17),
    "other/z.txt": b"not sent",
}


@pytest.mark.parametrize("sftp_only", [False, True], ids=["shell", "sftp-only"])
async def test_prefix_keeps_relative_keys_and_verifies(
        settings_for: SettingsFor, sshd: SshdServer, remote_dir: Path, s3: Any, bucket: str,
        sftp_only: bool) -> None:
    seed(s3, bucket, OBJECTS)
    settings = settings_for({"t": sftp_destination(sshd, remote_dir, sftp_only=sftp_only)})
    result = await send(settings, f"s3://{bucket}/data/", dest="t:in")
    assert result.status == "SUCCEEDED", result.error
    expected = {f"in/{k.removeprefix('data/')}": v for k, v in OBJECTS.items()
                if k.startswith("data/")}
    assert tree(remote_dir) == expected
    method = "readback-sha256" if sftp_only else "server-md5"
    by_dest = {f.destination: f for f in result.files}
    for rel, body in expected.items():
        f = by_dest[f"{remote_dir}/{rel}"]
        assert (f.size, f.sha256, f.md5) == (len(body), hashlib.sha256(body).hexdigest(),
                                             hashlib.md5(body).hexdigest())
        assert f.verified_by == method and f.status == "DELIVERED"


async def test_single_object_lands_under_its_base_name(settings: Settings, remote_dir: Path,
                                                        s3: Any, bucket: str) -> None:
    seed(s3, bucket, {"data/x/y.csv": b"1"})
    result = await send(settings, f"s3://{bucket}/data/x/y.csv")
    assert result.status == "SUCCEEDED"
    assert tree(remote_dir) == {"y.csv": b"1"}


async def test_absolute_path_inside_root_and_several_sources(
        settings: Settings, remote_dir: Path, s3: Any, bucket: str) -> None:
    seed(s3, bucket, {"a/1.txt": b"1", "b/2.txt": b"2"})
    result = await send(settings, f"s3://{bucket}/a/1.txt", f"s3://{bucket}/b/",
                        dest=f"t:{remote_dir}/sub")
    assert result.status == "SUCCEEDED"
    assert tree(remote_dir) == {"sub/1.txt": b"1", "sub/2.txt": b"2"}


@pytest.mark.parametrize(("verify", "method"), [("size", "size"), ("none", "none"),
                                                ("readback", "readback-sha256")])
async def test_verify_modes(settings_for: SettingsFor, sshd: SshdServer, remote_dir: Path,
                            s3: Any, bucket: str, verify: str, method: str) -> None:
    seed(s3, bucket, {"k": b"payload"})
    settings = settings_for({"t": sftp_destination(sshd, remote_dir, verify=verify)})
    result = await send(settings, f"s3://{bucket}/k")
    assert [f.verified_by for f in result.files] == [method]
    assert tree(remote_dir) == {"k": b"payload"}


@pytest.mark.parametrize(("source", "error"), [
    ("s3://{bucket}/missing.csv", "SourceNotFound"),
    ("s3://{bucket}/nothing-here/", "SourceNotFound"),
    ("s3://no-such-bucket-{bucket}/k", "SourceNotFound"),
    ("http://example/k", "UsageError"),
])
async def test_bad_sources_are_refused(settings: Settings, remote_dir: Path, bucket: str,
                                       source: str, error: str) -> None:
    result = await send(settings, source.format(bucket=bucket))
    assert (result.status, result.error and result.error["type"]) == ("REFUSED", error)
    assert tree(remote_dir) == {}


async def test_prefix_without_slash_gets_a_hint(settings: Settings, s3: Any,
                                                bucket: str) -> None:
    seed(s3, bucket, {"data/a": b"1"})
    result = await send(settings, f"s3://{bucket}/data")
    assert result.error is not None and "add the trailing slash" in result.error["message"]


@pytest.mark.parametrize(("dest", "error"), [
    ("t:../escape", "PathOutsideRoot"), ("t:/etc", "PathOutsideRoot"),
    ("t:a/../../..", "PathOutsideRoot"), ("nope:x", "UnknownDestination"), ("t", "UsageError")])
async def test_bad_destinations_are_refused(settings: Settings, remote_dir: Path, s3: Any,
                                            bucket: str, dest: str, error: str) -> None:
    seed(s3, bucket, {"k": b"1"})
    result = await send(settings, f"s3://{bucket}/k", dest=dest)
    assert result.status == "REFUSED"
    assert result.error is not None and result.error["type"] == error
    assert tree(remote_dir) == {}


async def test_object_key_escaping_the_prefix_is_refused(settings: Settings, remote_dir: Path,
                                                         s3: Any, bucket: str) -> None:
    seed(s3, bucket, {"data/../../../etc/passwd-copy": b"x", "data/ok": b"y"})
    result = await send(settings, f"s3://{bucket}/data/")
    assert result.error is not None and result.error["type"] == "PathOutsideRoot"
    assert tree(remote_dir) == {}


async def test_existing_target_with_fail_is_refused_and_untouched(
        settings: Settings, remote_dir: Path, s3: Any, bucket: str) -> None:
    seed(s3, bucket, {"p/a": b"new", "p/b": b"new"})
    (remote_dir / "b").write_bytes(b"old")
    result = await send(settings, f"s3://{bucket}/p/")
    assert result.error is not None and result.error["type"] == "TargetExists"
    assert f"{remote_dir}/b" in result.error["message"]
    assert tree(remote_dir) == {"b": b"old"}


async def test_overwrite_and_rename(settings_for: SettingsFor, sshd: SshdServer,
                                    remote_dir: Path, s3: Any, bucket: str) -> None:
    seed(s3, bucket, {"r.tar.gz": b"new"})
    (remote_dir / "r.tar.gz").write_bytes(b"old")
    renaming = settings_for({"t": sftp_destination(sshd, remote_dir, on_conflict="rename")})
    for _ in range(2):
        assert (await send(renaming, f"s3://{bucket}/r.tar.gz")).status == "SUCCEEDED"
    assert tree(remote_dir) == {"r.tar.gz": b"old", "r-1.tar.gz": b"new", "r-2.tar.gz": b"new"}
    overwriting = settings_for({"t": sftp_destination(sshd, remote_dir,
                                                      on_conflict="overwrite")})
    result = await send(overwriting, f"s3://{bucket}/r.tar.gz")
    assert result.files[0].destination == f"{remote_dir}/r.tar.gz"
    assert (remote_dir / "r.tar.gz").read_bytes() == b"new"


async def test_dry_run_moves_nothing(settings: Settings, remote_dir: Path, s3: Any,
                                     bucket: str) -> None:
    seed(s3, bucket, {"d/a/b.txt": b"12345"})
    result = await run_transfer(settings, TransferRequest(
        sources=[f"s3://{bucket}/d/"], destination="t:deep/", dry_run=True))
    assert result.status == "SUCCEEDED"
    assert [(f.destination, f.size, f.verified_by, f.status) for f in result.files] == [
        (f"{remote_dir}/deep/a/b.txt", 5, "server-md5", "PLANNED")]
    assert list(remote_dir.iterdir()) == []


class CorruptingSource(S3Source):
    """The real S3 source, with one byte flipped in flight (a damaged network path)."""

    async def open_range(self, bucket: str, key: str, start: int = 0,
                         end: int | None = None) -> S3Stream:
        real = await super().open_range(bucket, key, start, end)

        class Flipped(S3Stream):
            async def __aiter__(self) -> AsyncIterator[bytes]:
                first = True
                async for chunk in real:
                    yield (bytes([chunk[0] ^ 1]) + chunk[1:]) if first else chunk
                    first = False

        return Flipped(real.info, None, 0, "")


class DroppingSource(S3Source):
    """The real S3 source, failing after the first chunk (a reset mid-stream)."""

    async def open_range(self, bucket: str, key: str, start: int = 0,
                         end: int | None = None) -> S3Stream:
        real = await super().open_range(bucket, key, start, end)

        class Dropped(S3Stream):
            async def __aiter__(self) -> AsyncIterator[bytes]:
                async for chunk in real:
                    yield chunk
                    raise SourceError("connection reset by peer")

        return Dropped(real.info, None, 0, "")


@pytest.mark.parametrize(("source_cls", "error"), [(CorruptingSource, "ChecksumMismatch"),
                                                    (DroppingSource, "SourceError")])
async def test_failure_in_flight_leaves_nothing(settings: Settings, remote_dir: Path, s3: Any,
                                                bucket: str, source_cls: type[S3Source],
                                                error: str) -> None:
    seed(s3, bucket, {"f/a.bin": secrets.token_bytes(300_000)})
    source = source_cls(settings.s3, chunk_size=64 * 1024)
    result = await send(settings, f"s3://{bucket}/f/", source=source)
    assert result.status == "FAILED"
    assert result.error is not None and result.error["type"] == error
    assert [f.status for f in result.files] == ["FAILED"]
    assert tree(remote_dir) == {}, "no final file and no temporary file"


class Recorder:
    """Counts files in flight to check the parallelism limit."""

    def __init__(self) -> None:
        self.active = 0
        self.peak = 0
        self.moved = 0
        self.retries = 0
        self.resumed_at: list[int] = []

    def file_started(self, plan: FilePlan) -> None:
        self.active += 1
        self.peak = max(self.peak, self.active)

    def bytes_moved(self, plan: FilePlan, count: int) -> None:
        self.moved += count

    def file_retrying(self, plan: FilePlan, attempt: int, error: str) -> None:
        self.retries += 1

    def file_resumed(self, plan: FilePlan, offset: int) -> None:
        self.resumed_at.append(offset)

    def file_finished(self, result: FileResult) -> None:
        self.active -= 1


@pytest.mark.parametrize("threads", [1, 3])
async def test_parallel_files_respect_the_limit(settings_for: SettingsFor, sshd: SshdServer,
                                                remote_dir: Path, s3: Any, bucket: str,
                                                threads: int) -> None:
    objects = {f"m/{i:02d}.bin": secrets.token_bytes(200_000) for i in range(8)}
    seed(s3, bucket, objects)
    settings = settings_for({"t": sftp_destination(sshd, remote_dir)},
                            transfer={"max_parallel_threads": threads})
    recorder = Recorder()
    result = await send(settings, f"s3://{bucket}/m/", subscribers=[recorder])
    assert result.status == "SUCCEEDED"
    assert recorder.peak == threads
    assert recorder.moved == sum(len(b) for b in objects.values())
    assert len(tree(remote_dir)) == 8
