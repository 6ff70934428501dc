"""The bytes every tool moves: generated from a seeded PRNG, written locally and to S3.

Objects up to ``SINGLE_PART_MAX`` are uploaded as single-part objects:
their ETag is the object's MD5, which is what rclone checks the server's
``md5sum`` against and what FileFerry checks its streamed bytes against. (A
multipart ETag is not an MD5, and rclone would silently fall back to
comparing sizes.) Larger objects (the 4 GiB one of the memory case) are
uploaded in parts, so that neither this process nor moto holds a whole
request body, and carry their MD5 as ``x-amz-meta-md5chksum``, the metadata
rclone reads in place of the ETag (FileFerry then hashes the stream itself).

Workloads of the memory case live in S3 only (no tool reads a local copy),
are generated when the case starts and deleted when it ends: moto keeps
every object in its temporary directory.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import botocore.config
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from bench.measure import BenchError
from bench.servers import S3Server

__all__ = [
    "BUCKET",
    "FileSpec",
    "Stream",
    "Workload",
    "WorkloadSpec",
    "delete_objects",
    "make_local",
    "make_s3_only",
    "s3_client",
    "upload",
    "warm_page_cache",
]

BUCKET = "bench"
MiB = 2**20
_CHUNK = 8 * MiB
SINGLE_PART_MAX = 1024 * MiB
PART_SIZE = 64 * MiB


@dataclass(frozen=True)
class FileSpec:
    name: str
    size: int
    md5: str


@dataclass(frozen=True)
class WorkloadSpec:
    """What to generate: ``count`` files of ``size`` bytes, measured in MB/s or files/s."""

    key: str
    count: int
    size: int
    unit: str  # "MB/s" or "files/s"
    local: bool = True
    """Also keep a local copy (the sftp baseline uploads it)."""

    @property
    def title(self) -> str:
        return describe(self.count, self.size)


def describe(count: int, size: int) -> str:
    one = f"{size // MiB} MiB" if size >= MiB else f"{size // 1024} KiB"
    if size >= 1024 * MiB and size % (1024 * MiB) == 0:
        one = f"{size // (1024 * MiB)} GiB"
    return f"one object of {one}" if count == 1 else f"{count:,} objects of {one}"


@dataclass(frozen=True)
class Workload:
    """One generated data set, in S3 (and, unless S3-only, in ``local_dir``)."""

    key: str
    title: str
    unit: str
    local_dir: Path | None
    prefix: str
    files: tuple[FileSpec, ...]

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)

    @property
    def count(self) -> int:
        return len(self.files)

    def rate(self, wall_s: float) -> float:
        """MB/s (10^6 bytes per second), or files per second for many small files."""
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
        return describe(self.count, self.files[0].size)


class Stream:
    """Seeded pseudo-random bytes: an AES-CTR keystream (GB/s, where ``random`` does
    ~180 MB/s), the same for the same seed and name, incompressible."""

    def __init__(self, seed: str) -> None:
        key = hashlib.sha256(seed.encode()).digest()
        self._cipher = Cipher(algorithms.AES(key[:16]), modes.CTR(key[16:])).encryptor()

    def read(self, n: int) -> bytes:
        return self._cipher.update(bytes(n))


def _random_blocks(size: int, rng: Stream) -> Iterator[bytes]:
    left = size
    while left:
        block = rng.read(min(_CHUNK, left))
        left -= len(block)
        yield block


def _write_random(path: Path, size: int, rng: Stream) -> FileSpec:
    md5 = hashlib.md5(usedforsecurity=False)
    with path.open("wb") as out:
        for block in _random_blocks(size, rng):
            out.write(block)
            md5.update(block)
    return FileSpec(path.name, size, md5.hexdigest())


def _names(spec: WorkloadSpec) -> list[str]:
    return [f"{spec.key}.bin"] if spec.count == 1 else [f"f{i:05d}.bin"
                                                        for i in range(spec.count)]


def make_local(root: Path, spec: WorkloadSpec, seed: int) -> Workload:
    """Incompressible, reproducible files under ``root/KEY`` (upload them with ``upload``)."""
    rng = Stream(f"{seed}-{spec.key}")
    directory = root / spec.key
    directory.mkdir(parents=True)
    files = tuple(_write_random(directory / name, spec.size, rng) for name in _names(spec))
    return Workload(spec.key, spec.title, spec.unit, directory, f"{spec.key}/", files)


def s3_client(s3: S3Server) -> Any:
    return boto3.session.Session().client(
        "s3", endpoint_url=s3.endpoint_url, region_name=s3.region,
        aws_access_key_id=s3.access_key, aws_secret_access_key=s3.secret_key,
        config=botocore.config.Config(max_pool_connections=16,
                                      request_checksum_calculation="when_required"))


def ensure_bucket(client: Any) -> None:
    existing = {b["Name"] for b in client.list_buckets().get("Buckets", [])}
    if BUCKET not in existing:
        client.create_bucket(Bucket=BUCKET)


def upload(s3: S3Server, workloads: list[Workload]) -> None:
    """Put every local file as a single-part object and check that its ETag is its MD5."""
    client = s3_client(s3)
    ensure_bucket(client)

    def put(job: tuple[Workload, FileSpec]) -> None:
        workload, spec = job
        assert workload.local_dir is not None
        with (workload.local_dir / spec.name).open("rb") as body:
            etag = client.put_object(Bucket=BUCKET, Key=workload.prefix + spec.name,
                                     Body=body)["ETag"].strip('"')
        if etag != spec.md5:
            raise BenchError(f"S3 ETag of {spec.name} is {etag}, not its MD5 {spec.md5}")

    jobs = [(w, f) for w in workloads for f in w.files]
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(put, jobs))


def _put_generated(client: Any, key: str, size: int, seed: str) -> FileSpec:
    """One generated object, in parts when large; nothing bigger than a part in memory."""
    md5 = hashlib.md5(usedforsecurity=False)
    if size <= SINGLE_PART_MAX:
        body = b"".join(_random_blocks(size, Stream(seed)))
        md5.update(body)
        etag = client.put_object(Bucket=BUCKET, Key=key, Body=body)["ETag"].strip('"')
        if etag != md5.hexdigest():
            raise BenchError(f"S3 ETag of {key} is {etag}, not its MD5 {md5.hexdigest()}")
        return FileSpec(key.rsplit("/", 1)[-1], size, etag)
    # The MD5 goes into the metadata, which is only known at the end: a copy onto itself
    # with new metadata would make moto read the whole object into memory again, so the
    # bytes are generated twice from the same seed, hashed first, then uploaded.
    for block in _random_blocks(size, Stream(seed)):
        md5.update(block)
    digest = md5.hexdigest()
    upload_id = client.create_multipart_upload(
        Bucket=BUCKET, Key=key,
        Metadata={"md5chksum": base64.b64encode(bytes.fromhex(digest)).decode()})["UploadId"]
    parts, number, left, rng = [], 1, size, Stream(seed)
    while left:
        part = b"".join(_random_blocks(min(PART_SIZE, left), rng))
        left -= len(part)
        etag = client.upload_part(Bucket=BUCKET, Key=key, UploadId=upload_id,
                                  PartNumber=number, Body=part)["ETag"]
        parts.append({"ETag": etag, "PartNumber": number})
        number += 1
    client.complete_multipart_upload(Bucket=BUCKET, Key=key, UploadId=upload_id,
                                     MultipartUpload={"Parts": parts})
    return FileSpec(key.rsplit("/", 1)[-1], size, digest)


def make_s3_only(s3: S3Server, spec: WorkloadSpec, seed: int) -> Workload:
    """Generate the objects straight into S3 (no local copy), one at a time."""
    client = s3_client(s3)
    ensure_bucket(client)
    files = tuple(_put_generated(client, f"{spec.key}/{name}", spec.size,
                                 f"{seed}-{spec.key}-{name}") for name in _names(spec))
    return Workload(spec.key, spec.title, spec.unit, None, f"{spec.key}/", files)


def delete_objects(s3: S3Server, workload: Workload) -> None:
    """Remove a workload's objects from S3 (moto frees their temporary files)."""
    client = s3_client(s3)
    for spec in workload.files:
        client.delete_object(Bucket=BUCKET, Key=workload.prefix + spec.name)


def warm_page_cache(workloads: list[Workload]) -> None:
    """Read the local copies once so the sftp baseline reads them from memory."""
    for workload in workloads:
        if workload.local_dir is None:
            continue
        for spec in workload.files:
            with (workload.local_dir / spec.name).open("rb") as f:
                while f.read(_CHUNK):
                    pass
