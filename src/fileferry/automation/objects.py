"""The route's side of S3: list a prefix with ETags and times, select, act on originals.

Selection is pure (``select``): include/exclude globs on the key below the
prefix, the minimum age, and the archive prefix excluded when it lies inside
the source prefix (else archived copies would be sent again). Listing and the
post-delivery actions (tag, archive copy, delete) use their own boto3 client;
botocore errors become FileFerry errors at this boundary.
"""

from __future__ import annotations

import asyncio
import fnmatch
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import boto3
import botocore.config

from fileferry.automation.settings import RouteSettings
from fileferry.config import S3Settings
from fileferry.endpoints.s3 import map_s3_error

__all__ = ["S3Object", "Selection", "SourceBucket", "select"]


@dataclass(frozen=True)
class S3Object:
    key: str
    size: int
    etag: str
    modified: float
    """Last-Modified, seconds since the epoch."""


@dataclass
class Selection:
    eligible: list[S3Object] = field(default_factory=list)
    excluded: int = 0
    too_new: list[S3Object] = field(default_factory=list)

    def ready_at(self, min_age: float) -> float | None:
        """When the first skipped object becomes old enough, or None."""
        if not self.too_new:
            return None
        return min(o.modified for o in self.too_new) + min_age


def _matches(relative: str, patterns: Sequence[str]) -> bool:
    return any(fnmatch.fnmatchcase(relative, p) for p in patterns)


def select(route: RouteSettings, objects: Sequence[S3Object], now: float) -> Selection:
    """Objects the route may send now, in key order (the ledger is applied after)."""
    src = route.source
    archive = route.archive_location()
    out = Selection()
    for obj in sorted(objects, key=lambda o: o.key):
        relative = obj.key[len(src.prefix):]
        inside_archive = archive is not None and archive[0] == src.bucket \
            and obj.key.startswith(archive[1])
        if inside_archive or not _matches(relative, src.include) \
                or _matches(relative, src.exclude):
            out.excluded += 1
        elif src.min_age and now - obj.modified < src.min_age:
            out.too_new.append(obj)
        else:
            out.eligible.append(obj)
    return out


class SourceBucket:
    """List, inspect and act on a route's source objects (thread-offloaded boto3)."""

    def __init__(self, settings: S3Settings, client: Any = None) -> None:
        self._client = client or boto3.session.Session().client(
            "s3", endpoint_url=settings.endpoint_url, region_name=settings.region,
            config=botocore.config.Config(retries={"mode": "standard", "max_attempts": 5}))

    async def _call(self, what: str, method: str, **kwargs: Any) -> Any:
        try:
            return await asyncio.to_thread(getattr(self._client, method), **kwargs)
        except Exception as exc:
            raise map_s3_error(exc, what) from exc

    async def list(self, bucket: str, prefix: str) -> list[S3Object]:
        """Every object under ``prefix`` (folder markers skipped)."""
        def collect() -> list[S3Object]:
            found = []
            pages = self._client.get_paginator("list_objects_v2").paginate(Bucket=bucket,
                                                                          Prefix=prefix)
            for page in pages:
                for item in page.get("Contents", []):
                    if item["Key"].endswith("/"):
                        continue
                    modified: datetime = item["LastModified"]
                    found.append(S3Object(item["Key"], int(item["Size"]),
                                          str(item["ETag"]).strip('"'), modified.timestamp()))
            return found

        try:
            return await asyncio.to_thread(collect)
        except Exception as exc:
            raise map_s3_error(exc, f"s3://{bucket}/{prefix}") from exc

    async def head(self, bucket: str, key: str) -> tuple[str, str | None] | None:
        """(ETag, version id) of the object now, or None when it is gone."""
        from fileferry.errors import SourceNotFound

        try:
            meta = await self._call(f"s3://{bucket}/{key}", "head_object", Bucket=bucket,
                                    Key=key)
        except SourceNotFound:
            return None
        version = meta.get("VersionId")
        return str(meta["ETag"]).strip('"'), (None if version in (None, "null") else version)

    async def add_tags(self, bucket: str, key: str, tags: dict[str, str]) -> None:
        what = f"s3://{bucket}/{key}"
        current = await self._call(what, "get_object_tagging", Bucket=bucket, Key=key)
        merged = {t["Key"]: t["Value"] for t in current.get("TagSet", [])} | tags
        await self._call(what, "put_object_tagging", Bucket=bucket, Key=key,
                         Tagging={"TagSet": [{"Key": k, "Value": v}
                                             for k, v in merged.items()]})

    async def copy(self, bucket: str, key: str, etag: str, to_bucket: str,
                   to_key: str) -> None:
        """Copy only the version that was delivered (``CopySourceIfMatch``); managed
        copy, so objects over 5 GiB are copied in parts."""
        await self._call(f"s3://{bucket}/{key}", "copy",
                         CopySource={"Bucket": bucket, "Key": key}, Bucket=to_bucket,
                         Key=to_key, ExtraArgs={"CopySourceIfMatch": f'"{etag}"'})

    async def delete(self, bucket: str, key: str) -> None:
        await self._call(f"s3://{bucket}/{key}", "delete_object", Bucket=bucket, Key=key)
