"""The S3 source: any S3-compatible store, the standard AWS credential chain.

botocore is synchronous; its calls run in worker threads and a small
read-ahead queue lets the next pieces download while the previous one is
being written. The client (~0.1 s of loading service models, more on a busy
machine) is built once per process and configuration, in a background
thread while the destination is being connected to, and shared by every
transfer after that (botocore clients are thread-safe): a long-running
process (the API, the agent) does not pay for it per transfer.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import contextlib
import ctypes
import hashlib
import os
import sys
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import botocore.config
import botocore.exceptions
import botocore.httpchecksum
import botocore.response
import botocore.session

from fileferry.endpoints.base import ObjectInfo
from fileferry.errors import (
    ConfigError,
    EndpointUnavailable,
    FileFerryError,
    PermissionDenied,
    SourceError,
    SourceNotFound,
    UsageError,
)
from fileferry.transfer.throttle import ByteBudget

if TYPE_CHECKING:
    from fileferry.config import S3Settings

__all__ = ["PIECE", "SMALL", "S3Bytes", "S3Source", "S3Stream", "S3Uri", "map_s3_error",
           "parse_s3_uri", "shared_client"]

PIECE = 2 * 1024 * 1024
"""Bytes per S3 read at most: what the pipeline passes along and hashes at once."""
SMALL = 256 * 1024
"""Objects up to this size are read whole in the thread that made the GET."""
_M_MMAP_THRESHOLD = -3
_NOT_FOUND = {"NoSuchKey", "NoSuchBucket", "404", "NotFound"}
_DENIED = {"AccessDenied", "403", "AllAccessDisabled", "InvalidAccessKeyId",
           "SignatureDoesNotMatch", "ExpiredToken"}


@dataclass(frozen=True)
class S3Uri:
    bucket: str
    key: str

    @property
    def is_prefix(self) -> bool:
        return self.key == "" or self.key.endswith("/")

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


def parse_s3_uri(text: str) -> S3Uri:
    if not text.startswith("s3://"):
        raise UsageError(f"source {text!r} must be s3://bucket/key or s3://bucket/prefix/")
    bucket, _, key = text[5:].partition("/")
    if not bucket:
        raise UsageError(f"source {text!r} has no bucket name")
    return S3Uri(bucket, key)


def map_s3_error(exc: Exception, what: str) -> FileFerryError:
    """Translate a botocore error into the tree (the caller raises it ``from exc``)."""
    if isinstance(exc, botocore.exceptions.NoCredentialsError):
        return ConfigError("no AWS credentials found: set AWS_ACCESS_KEY_ID and "
                           "AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or run where a role applies")
    if isinstance(exc, botocore.exceptions.ClientError):
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code in _NOT_FOUND:
            return SourceNotFound(f"{what} does not exist ({code})")
        if code in _DENIED:
            return PermissionDenied(f"S3 refused access to {what} ({code}); check the "
                                    "credentials and the bucket policy")
        if code in {"SlowDown", "ServiceUnavailable", "InternalError", "503", "500"}:
            return EndpointUnavailable(f"S3 is unavailable reading {what} ({code})")
        return SourceError(f"S3 failed on {what}: {code} {exc}")
    if isinstance(exc, botocore.exceptions.EndpointConnectionError | botocore.exceptions.
                  ConnectTimeoutError | botocore.exceptions.ReadTimeoutError |
                  botocore.exceptions.ConnectionClosedError | ConnectionError):
        return EndpointUnavailable(f"S3 could not be reached reading {what}: {exc}")
    if isinstance(exc, botocore.exceptions.BotoCoreError):
        return SourceError(f"S3 failed on {what}: {exc}")
    return SourceError(f"reading {what} failed: {exc!r}")


def _checksums(meta: dict[str, Any], whole_object: bool) -> dict[str, str]:
    """Hex digests S3 holds for the whole object, where they are trustworthy."""
    out: dict[str, str] = {}
    if not whole_object:
        return out
    etag = str(meta.get("ETag", "")).strip('"')
    encrypted_by_key = (str(meta.get("ServerSideEncryption", "")).startswith("aws:kms")
                        or meta.get("SSECustomerAlgorithm"))
    if etag and "-" not in etag and len(etag) == 32 and not encrypted_by_key:
        out["md5"] = etag.lower()
    sha = meta.get("ChecksumSHA256")
    if sha and "-" not in str(sha):
        with contextlib.suppress(ValueError):
            out["sha256"] = base64.b64decode(str(sha)).hex()
    return out


def _without_flexible_checksum(body: Any) -> Any:
    """The plain body under botocore's CRC-validating wrapper, when our own check covers it.

    With ``ChecksumMode=ENABLED`` (needed to receive ``x-amz-checksum-sha256``)
    botocore also validates the object's CRC32/CRC32C on every byte it reads,
    a second pass over the data on the client. When S3 holds an MD5 (a
    single-part ETag) or a SHA-256 for the whole object, the stream is already
    compared with that, so the CRC adds cost and no protection. The plain
    ``StreamingBody`` still checks the Content-Length. Anything unexpected
    keeps the validating body.
    """
    checksum_body = getattr(botocore.httpchecksum, "StreamingChecksumBody", None)
    if checksum_body is None or type(body) is not checksum_body:
        return body
    raw: Any = getattr(body, "_raw_stream", None)
    length: Any = getattr(body, "_content_length", None)
    if raw is None or length is None or getattr(body, "_amount_read", 1) != 0:
        return body
    return botocore.response.StreamingBody(raw, length)


class S3Stream:
    """An open GET: ``info`` from the response headers, pieces by iterating.

    Up to ``chunk_size`` bytes are read ahead of the consumer, in reads of at
    most ``PIECE``: memory per file in flight grows with ``chunk_size``, and
    no single buffer is larger than a piece.
    """

    def __init__(self, info: ObjectInfo, body: Any, chunk_size: int, what: str,
                 budget: ByteBudget | None = None) -> None:
        self.info = info
        self._body = body
        self._piece = max(1, min(chunk_size, PIECE))
        self._read_ahead = max(1, chunk_size // self._piece)
        self._what = what
        self._budget = budget

    async def __aiter__(self) -> AsyncIterator[bytes]:
        queue: asyncio.Queue[bytes | Exception | None] = asyncio.Queue(self._read_ahead)
        budget, piece = self._budget, self._piece

        async def pump() -> None:
            held = 0
            try:
                while True:
                    if budget is not None:
                        await budget.acquire(piece)
                        held = piece
                    chunk = await asyncio.to_thread(self._body.read, piece)
                    if budget is not None:
                        budget.release(held - len(chunk))
                        held = len(chunk)
                    if not chunk:
                        break
                    await queue.put(chunk)
                    held = 0
                await queue.put(None)
            except Exception as exc:  # handed to the consumer below
                await queue.put(exc)
            finally:
                if budget is not None and held:
                    budget.release(held)

        task = asyncio.create_task(pump())
        try:
            while (item := await queue.get()) is not None:
                if isinstance(item, Exception):
                    raise map_s3_error(item, self._what) from item
                try:
                    yield item
                finally:
                    if budget is not None:
                        budget.release(len(item))
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            while not queue.empty():  # chunks read but never consumed
                left = queue.get_nowait()
                if budget is not None and isinstance(left, bytes):
                    budget.release(len(left))
            await asyncio.to_thread(self._body.close)

    async def aclose(self) -> None:
        """Release a GET that will not be read (iterating to the end closes it by itself)."""
        await asyncio.to_thread(self._body.close)


_CLIENTS: dict[tuple[str | None, str | None, int, str], concurrent.futures.Future[Any]] = {}
_CLIENTS_LOCK = threading.Lock()
_CREDENTIAL_VARIABLES = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
                         "AWS_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE",
                         "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_CA_BUNDLE")


def _build(settings: S3Settings, max_connections: int,
           ready: concurrent.futures.Future[Any]) -> None:
    try:
        client = botocore.session.get_session().create_client(
            "s3",
            endpoint_url=settings.endpoint_url,
            region_name=settings.region,
            config=botocore.config.Config(max_pool_connections=max_connections,
                                          retries={"mode": "standard", "max_attempts": 5}),
        )
    except BaseException as exc:  # raised again where the client is first needed
        ready.set_exception(exc)
    else:
        ready.set_result(client)


def shared_client(settings: S3Settings, max_connections: int) -> concurrent.futures.Future[Any]:
    """The process's client for these settings, being built or built.

    A client keeps the credentials it found when it was built (those of a
    role refresh themselves), so the environment variables that choose them
    are part of the key (as a digest): changing them gets a new client. A
    client that failed to build is not kept: the next transfer tries again.
    """
    environment = "\0".join(os.environ.get(name, "") for name in _CREDENTIAL_VARIABLES)
    key = (settings.endpoint_url, settings.region, max_connections,
           hashlib.sha256(environment.encode()).hexdigest())
    with _CLIENTS_LOCK:
        ready = _CLIENTS.get(key)
        if ready is not None and not (ready.done() and ready.exception() is not None):
            return ready
        ready = concurrent.futures.Future()
        _CLIENTS[key] = ready
    threading.Thread(target=_build, args=(settings, max_connections, ready),
                     name="fileferry-s3-client", daemon=True).start()
    return ready


def _return_big_buffers_to_the_os() -> None:
    """Serve allocations of 1 MiB and more with their own mappings, always.

    glibc raises its mmap threshold to the size of the last large block freed
    (up to 32 MiB), after which the pieces read from S3 come from per-thread
    heaps that keep their peak: with several files in flight, peak RSS was
    nearly twice the bytes actually held. A fixed threshold keeps every
    freed piece going back to the system. Nothing happens off glibc.
    """
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).mallopt(_M_MMAP_THRESHOLD, 1024 * 1024)


class S3Bytes:
    """A small object already read: the same interface as ``S3Stream``, one piece."""

    def __init__(self, info: ObjectInfo, data: bytes) -> None:
        self.info = info
        self._data = data

    async def __aiter__(self) -> AsyncIterator[bytes]:
        if self._data:
            yield self._data

    async def aclose(self) -> None:
        self._data = b""


class S3Source:
    """Reads objects from S3 or any S3-compatible endpoint."""

    _heap_tuned = False

    def __init__(self, settings: S3Settings, chunk_size: int, max_connections: int = 20,
                 client: Any = None, budget: ByteBudget | None = None) -> None:
        self._chunk_size = chunk_size
        self._budget = budget
        if not S3Source._heap_tuned:
            S3Source._heap_tuned = True
            _return_big_buffers_to_the_os()
        if client is not None:
            self._ready: concurrent.futures.Future[Any] = concurrent.futures.Future()
            self._ready.set_result(client)
        else:
            self._ready = shared_client(settings, max_connections)

    async def _client(self) -> Any:
        """The botocore client, once the background thread has built it."""
        if not self._ready.done():
            # shielded: a cancelled caller must not cancel the build others share
            await asyncio.shield(asyncio.wrap_future(self._ready))
        return self._ready.result()

    async def _call(self, what: str, method: str, **kwargs: Any) -> Any:
        client = await self._client()
        try:
            return await asyncio.to_thread(getattr(client, method), **kwargs)
        except Exception as exc:
            raise map_s3_error(exc, what) from exc

    async def stat(self, bucket: str, key: str) -> ObjectInfo:
        what = f"s3://{bucket}/{key}"
        meta = await self._call(what, "head_object", Bucket=bucket, Key=key,
                                ChecksumMode="ENABLED")
        return ObjectInfo(key, int(meta["ContentLength"]), _checksums(meta, True))

    async def list(self, bucket: str, prefix: str) -> list[ObjectInfo]:
        what = f"s3://{bucket}/{prefix}"
        client = await self._client()

        def collect() -> list[ObjectInfo]:
            out = []
            pages = client.get_paginator("list_objects_v2").paginate(
                Bucket=bucket, Prefix=prefix)
            for page in pages:
                for item in page.get("Contents", []):
                    if not item["Key"].endswith("/"):
                        out.append(ObjectInfo(item["Key"], int(item["Size"])))
            return out

        try:
            return await asyncio.to_thread(collect)
        except Exception as exc:
            raise map_s3_error(exc, what) from exc

    async def open_range(self, bucket: str, key: str, start: int = 0,
                         end: int | None = None) -> S3Stream | S3Bytes:
        """Open a streamed GET of ``[start, end)``; see ``Source.open_range``.

        An object of at most ``SMALL`` bytes is read and closed in the same
        worker thread as its GET: one thread hop per small file instead of four
        (GET, read, the empty read at its end, close), which is most of what a
        small file costs besides the GET itself.
        """
        what = f"s3://{bucket}/{key}"
        kwargs: dict[str, Any] = {"Bucket": bucket, "Key": key, "ChecksumMode": "ENABLED"}
        whole = start == 0 and end is None
        if not whole:
            kwargs["Range"] = f"bytes={start}-" + ("" if end is None else str(end - 1))
        client = await self._client()

        def get() -> tuple[ObjectInfo, Any, bytes | None]:
            resp = client.get_object(**kwargs)
            info = ObjectInfo(key, int(resp["ContentLength"]), _checksums(resp, whole))
            body = resp["Body"]
            if info.checksums:
                body = _without_flexible_checksum(body)
            if info.size > SMALL:
                return info, body, None
            try:
                return info, None, body.read()  # checks the Content-Length too
            finally:
                body.close()

        try:
            info, body, data = await asyncio.to_thread(get)
        except Exception as exc:
            raise map_s3_error(exc, what) from exc
        if data is not None:
            return S3Bytes(info, data)
        return S3Stream(info, body, self._chunk_size, what, self._budget)
