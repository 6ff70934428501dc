"""The bytes every tool moves: generated once, written locally and to S3 as single-part objects.

Single-part uploads matter for a like-for-like comparison: their ETag is the
object's MD5, which is what rclone checks the server's ``md5sum`` against and
what FileFerry checks its streamed bytes against. (A multipart ETag is not an
MD5, and rclone would silently fall back to comparing sizes.)
"""

from __future__ import annotations

import hashlib
import random
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import botocore.config

from bench.measure import BenchError
from bench.servers import S3Server

__all__ = ["BUCKET", "FileSpec", "Workload", "make_workloads", "upload", "warm_page_cache"]

BUCKET = "bench"
_CHUNK = 8 * 1024 * 1024


@dataclass(frozen=True)
class FileSpec:
    name: str
    size: int
    md5: str


@dataclass(frozen=True)
class Workload:
    """One data set: ``big`` (one file, MB/s) or ``small`` (many files, files/s)."""

    key: str
    title: str
    unit: str
    local_dir: Path
    prefix: str
    files: tuple[FileSpec, ...]

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)

    @property
    def count(self) -> int:
        return len(self.files)

    def rate(self, wall_s: float) -> float:
        """MB/s (10^6 bytes) for one big file, files/s for many small ones."""
        if self.unit == "files/s":
            return self.count / wall_s
        return self.total_bytes / wall_s / 1e6

    @property
    def single_object(self) -> bool:
        return self.count == 1

    def s3_uri(self) -> str:
        """What FileFerry is given: the object itself, or the prefix."""
        if self.single_object:
            return f"s3://{BUCKET}/{self.prefix}{self.files[0].name}"
        return f"s3://{BUCKET}/{self.prefix}"

    def rclone_source(self, remote: str) -> str:
        if self.single_object:
            return f"{remote}:{BUCKET}/{self.prefix}{self.files[0].name}"
        return f"{remote}:{BUCKET}/{self.prefix}"

    def describe(self) -> str:
        if self.single_object:
            return f"1 file of {self.total_bytes / 2**20:.0f} MiB"
        return f"{self.count} files of {self.files[0].size // 1024} KiB"


def _write_random(path: Path, size: int, rng: random.Random) -> FileSpec:
    md5 = hashlib.md5(usedforsecurity=False)
    with path.open("wb") as out:
        left = size
        while left:
            block = rng.randbytes(min(_CHUNK, left))
            out.write(block)
            md5.update(block)
            left -= len(block)
    return FileSpec(path.name, size, md5.hexdigest())


def make_workloads(root: Path, big_mib: int, small_count: int, small_kib: int,
                   seed: int = 20261128) -> dict[str, Workload]:
    """Incompressible, reproducible bytes (a seeded PRNG) under ``root``."""
    rng = random.Random(seed)
    big_dir, small_dir = root / "big", root / "small"
    big_dir.mkdir(parents=True)
    small_dir.mkdir(parents=True)
    big = (_write_random(big_dir / "big.bin", big_mib * 2**20, rng),)
    small = tuple(_write_random(small_dir / f"f{i:05d}.bin", small_kib * 1024, rng)
                  for i in range(small_count))
    return {
        "big": Workload("big", f"one big file ({big_mib} MiB)", "MB/s", big_dir, "big/", big),
        "small": Workload("small", f"many small files ({small_count} × {small_kib} KiB)",
                          "files/s", small_dir, "small/", small),
    }


def s3_client(s3: S3Server) -> Any:
    return boto3.session.Session().client(
        "s3", endpoint_url=s3.endpoint_url, region_name=s3.region,
        aws_access_key_id=s3.access_key, aws_secret_access_key=s3.secret_key,
        config=botocore.config.Config(max_pool_connections=16))


def upload(s3: S3Server, workloads: dict[str, Workload]) -> None:
    """Put every file as a single-part object and check that its ETag is its MD5."""
    client = s3_client(s3)
    client.create_bucket(Bucket=BUCKET)

    def put(job: tuple[Workload, FileSpec]) -> None:
        workload, spec = job
        with (workload.local_dir / spec.name).open("rb") as body:
            etag = client.put_object(Bucket=BUCKET, Key=workload.prefix + spec.name,
                                     Body=body)["ETag"].strip('"')
        if etag != spec.md5:
            raise BenchError(f"S3 ETag of {spec.name} is {etag}, not its MD5 {spec.md5}")

    jobs = [(w, f) for w in workloads.values() for f in w.files]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(put, jobs))


def warm_page_cache(workloads: dict[str, Workload]) -> None:
    """Read the local copies once so the sftp baseline reads them from memory."""
    for workload in workloads.values():
        for spec in workload.files:
            with (workload.local_dir / spec.name).open("rb") as f:
                while f.read(_CHUNK):
                    pass
