"""Large files as parallel ranges on SFTP, checked byte for byte; resumed range by range."""

from __future__ import annotations

import hashlib
import itertools
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from fileferry.config import Settings
from fileferry.endpoints.s3 import S3Source, S3Stream
from fileferry.transfer.ranges import plan_ranges
from tests.conftest import sftp_destination
from tests.servers.proxy import FaultProxy
from tests.servers.sshd import SshdServer
from tests.transfer.test_engine_sftp import Recorder, seed, send, tree
from tests.transfer.test_resilience import FAST_RETRY, through

SettingsFor = Callable[..., Settings]
MiB = 1024 * 1024
RANGED = {"large_file_threshold": 4 * MiB, "small_file_threshold": MiB,
          "min_range_size": MiB, "max_ranges": 4, "default_chunk_size": 256 * 1024}


def test_plan_ranges_cover_the_file_exactly() -> None:
    for size in (2 * MiB, 10 * MiB + 3, 64 * MiB):
        ranges = plan_ranges(size, MiB, 4)
        assert ranges[0][0] == 0 and ranges[-1][1] == size
        assert all(a[1] == b[0] for a, b in itertools.pairwise(ranges))
        assert len(ranges) <= 4 and all(e - s >= MiB for s, e in ranges)
    assert plan_ranges(3 * MiB, 2 * MiB, 4) == [(0, 3 * MiB)]


class CountingSource(S3Source):
    """The real S3 source, noting each GET's range."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings.s3, settings.transfer.default_chunk_size)
        self.gets: list[tuple[str, int, int | None]] = []

    async def open_range(self, bucket: str, key: str, start: int = 0,
                         end: int | None = None) -> S3Stream:
        self.gets.append((key, start, end))
        return await super().open_range(bucket, key, start, end)


@pytest.mark.parametrize(("sftp_only", "method"), [(False, "server-md5"),
                                                   (True, "readback-sha256")])
async def test_large_file_in_parallel_ranges(settings_for: SettingsFor, sshd: SshdServer,
                                             remote_dir: Path, s3: Any, bucket: str,
                                             sftp_only: bool, method: str) -> None:
    body = secrets.token_bytes(6 * MiB + 12345)
    small = b"small file, sent whole"
    seed(s3, bucket, {"d/big.bin": body, "d/small.txt": small})
    settings = settings_for({"t": sftp_destination(sshd, remote_dir, sftp_only=sftp_only)},
                            transfer=RANGED)
    source = CountingSource(settings)
    result = await send(settings, f"s3://{bucket}/d/", source=source)
    assert result.status == "SUCCEEDED", result.error
    assert sorted(g for g in source.gets if g[0] == "d/big.bin") == [
        ("d/big.bin", s, e) for s, e in plan_ranges(len(body), MiB, 4)]
    assert [g for g in source.gets if g[0] == "d/small.txt"] == [("d/small.txt", 0, None)]
    assert tree(remote_dir) == {"big.bin": body, "small.txt": small}
    big = next(f for f in result.files if f.destination.endswith("big.bin"))
    assert big.sha256 == hashlib.sha256(body).hexdigest()
    assert big.verified_by == method
    if sftp_only:
        assert big.md5 == hashlib.md5(body).hexdigest()


async def test_ranges_resume_after_a_cut(settings_for: SettingsFor, sshd: SshdServer,
                                         remote_dir: Path, tmp_path: Path, s3: Any,
                                         bucket: str) -> None:
    body = secrets.token_bytes(8 * MiB)
    seed(s3, bucket, {"big.bin": body})
    with FaultProxy(sshd.shell_port) as proxy:
        dest = through(sshd, proxy, remote_dir, tmp_path, max_sessions=4)
        settings = settings_for({"t": dest}, transfer=RANGED)
        proxy.cut_after(5 * MiB)
        recorder = Recorder()
        result = await send(settings, f"s3://{bucket}/big.bin", subscribers=[recorder])
        assert result.status == "SUCCEEDED", result.error
        assert tree(remote_dir) == {"big.bin": body}
        assert result.files[0].sha256 == hashlib.sha256(body).hexdigest()
        assert proxy.cuts == 1 and recorder.retries >= 1
        assert proxy.bytes_up < 1.5 * len(body)
    assert FAST_RETRY["retry_backoff"] == 0
