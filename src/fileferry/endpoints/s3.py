"""The S3 source: any S3-compatible store, the standard AWS credential chain.

boto3 is synchronous; its calls run in worker threads and a small read-ahead
queue lets the next chunk download while the previous one is being written.
The client itself (~0.1 s of loading service models) is built in a
background thread, while the destination is being connected to.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import contextlib
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import boto3
import boto3.s3.inject  # imported here, not for the first time in the client thread
import botocore.config
import botocore.exceptions
import botocore.httpchecksum
import botocore.response

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

__all__ = ["S3Source", "S3Stream", "S3Uri", "map_s3_error", "parse_s3_uri"]

READ_AHEAD = 1
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
    """An open GET: ``info`` from the response headers, chunks by iterating."""

    def __init__(self, info: ObjectInfo, body: Any, chunk_size: int, what: str,
                 budget: ByteBudget | None = None) -> None:
        self.info = info
        self._body = body
        self._chunk_size = chunk_size
        self._what = what
        self._budget = budget

    async def __aiter__(self) -> AsyncIterator[bytes]:
        queue: asyncio.Queue[bytes | Exception | None] = asyncio.Queue(READ_AHEAD)
        budget = self._budget

        async def pump() -> None:
            held = 0
            try:
                while True:
                    if budget is not None:
                        await budget.acquire(self._chunk_size)
                        held = self._chunk_size
                    chunk = await asyncio.to_thread(self._body.read, self._chunk_size)
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


class S3Source:
    """Reads objects from S3 or any S3-compatible endpoint."""

    def __init__(self, settings: S3Settings, chunk_size: int, max_connections: int = 20,
                 client: Any = None, budget: ByteBudget | None = None) -> None:
        self._chunk_size = chunk_size
        self._budget = budget
        self._ready: concurrent.futures.Future[Any] = concurrent.futures.Future()
        if client is not None:
            self._ready.set_result(client)
        else:
            threading.Thread(target=self._build, args=(settings, max_connections),
                             name="fileferry-s3-client", daemon=True).start()

    def _build(self, settings: S3Settings, max_connections: int) -> None:
        try:
            client = boto3.session.Session().client(
                "s3",
                endpoint_url=settings.endpoint_url,
                region_name=settings.region,
                config=botocore.config.Config(max_pool_connections=max_connections,
                                              retries={"mode": "standard", "max_attempts": 5}),
            )
        except BaseException as exc:  # raised again where the client is first needed
            self._ready.set_exception(exc)
        else:
            self._ready.set_result(client)

    async def _client(self) -> Any:
        """The boto3 client, once the background thread has built it."""
        if not self._ready.done():
            await asyncio.wrap_future(self._ready)
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
                         end: int | None = None) -> S3Stream:
        """Open a streamed GET of ``[start, end)``; see ``Source.open_range``."""
        what = f"s3://{bucket}/{key}"
        kwargs: dict[str, Any] = {"Bucket": bucket, "Key": key, "ChecksumMode": "ENABLED"}
        whole = start == 0 and end is None
        if not whole:
            kwargs["Range"] = f"bytes={start}-" + ("" if end is None else str(end - 1))
        resp = await self._call(what, "get_object", **kwargs)
        info = ObjectInfo(key, int(resp["ContentLength"]), _checksums(resp, whole))
        body = resp["Body"]
        if info.checksums:
            body = _without_flexible_checksum(body)
        return S3Stream(info, body, self._chunk_size, what, self._budget)
