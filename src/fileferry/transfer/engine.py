"""A whole transfer: resolve sources, plan targets, check before moving, copy in parallel.

Everything that can refuse the transfer (missing objects, unknown
destination, escaping paths, host keys, credentials, existing targets) is
checked before the first byte moves, so a refusal leaves nothing behind.
"""

from __future__ import annotations

import asyncio
import getpass
import logging
import posixpath
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from fileferry.config import DestinationSettings, Settings
from fileferry.endpoints.base import Destination, Source
from fileferry.endpoints.registry import open_destination
from fileferry.endpoints.s3 import S3Source, S3Uri, parse_s3_uri
from fileferry.errors import (
    FileFerryError,
    RefusedError,
    SourceNotFound,
    TargetExists,
    TransferFailed,
    UnknownDestination,
    UsageError,
    ValidationError,
)
from fileferry.models import FilePlan, FileResult, TransferResult, VerifiedBy, new_transfer_id
from fileferry.paths import relative_key, split_destination, target_dir, target_path
from fileferry.transfer.copy import CopyOptions, copy_file
from fileferry.transfer.progress import Broadcast, ProgressSubscriber
from fileferry.transfer.ranges import copy_ranges, plan_ranges, uses_ranges
from fileferry.transfer.retry import RetryPolicy, Sleep
from fileferry.transfer.throttle import ByteBudget, TokenBucket

__all__ = ["TransferRequest", "bucket_for", "build_plan", "destination_settings",
           "make_parents",
           "refuse_existing",
           "run_transfer", "verification_plan"]

log = logging.getLogger(__name__)
STAT_CONCURRENCY = 16


@dataclass
class TransferRequest:
    sources: Sequence[str]
    destination: str
    requester: str = field(default_factory=getpass.getuser)
    dry_run: bool = False
    transfer_id: str = field(default_factory=new_transfer_id)
    names: Mapping[str, str] | None = None
    """Source URI -> name below the destination directory (a route's naming template);
    when given, only these objects are sent, also from a listed prefix."""


def destination_settings(settings: Settings, name: str) -> DestinationSettings:
    try:
        return settings.destinations[name]
    except KeyError:
        known = ", ".join(sorted(settings.destinations)) or "none configured"
        raise UnknownDestination(f"unknown destination {name!r} (known: {known}); add it under "
                                 "destinations: in the configuration") from None


async def _expand(source: Source, uri: S3Uri) -> list[tuple[str, int, str, dict[str, str]]]:
    """(key, size, relative name, checksums) for each object a source names."""
    if uri.is_prefix:
        found = await source.list(uri.bucket, uri.key)
        if not found:
            raise SourceNotFound(f"no objects under {uri}; check the bucket and prefix")
        return [(o.path, o.size, relative_key(o.path, uri.key), o.checksums) for o in found]
    try:
        info = await source.stat(uri.bucket, uri.key)
    except SourceNotFound:
        hint = ""
        if await source.list(uri.bucket, uri.key + "/"):
            hint = f"; {uri}/ is a prefix: add the trailing slash to send what is under it"
        raise SourceNotFound(f"{uri} does not exist{hint}") from None
    return [(uri.key, info.size, relative_key(uri.key, None), info.checksums)]


async def build_plan(source: Source, dest: Destination, name: str,
                     request: TransferRequest) -> list[FilePlan]:
    """Resolve every source to objects and every object to a confined target path."""
    _, dest_path = split_destination(request.destination)
    directory = target_dir(dest.root, dest_path, name)
    plans: list[FilePlan] = []
    seen: dict[str, str] = {}
    for text in request.sources:
        uri = parse_s3_uri(text)
        for key, size, rel, sums in await _expand(source, uri):
            src = f"s3://{uri.bucket}/{key}"
            if request.names is not None:
                if src not in request.names:
                    continue
                rel = request.names[src]
            target = target_path(dest.root, directory, rel)
            if target in seen and seen[target] != src:
                raise ValidationError(f"{seen[target]} and {src} would both land at {target}; "
                                      "send them in separate transfers")
            if target in seen:
                continue
            seen[target] = src
            plans.append(FilePlan(source=src, bucket=uri.bucket, key=key, size=size,
                                  destination=target, source_md5=sums.get("md5"),
                                  source_sha256=sums.get("sha256")))
    return plans


async def refuse_existing(dest: Destination, plans: list[FilePlan], name: str) -> None:
    gate = asyncio.Semaphore(STAT_CONCURRENCY)

    async def exists(plan: FilePlan) -> bool:
        async with gate:
            return await dest.stat(plan.destination) is not None

    flags = await asyncio.gather(*(exists(p) for p in plans))
    clashes = [p.destination for p, f in zip(plans, flags, strict=True) if f]
    if clashes:
        shown = ", ".join(clashes[:5]) + (f" and {len(clashes) - 5} more" if len(clashes) > 5
                                          else "")
        raise TargetExists(f"already on {name}: {shown}; destinations.{name}.on_conflict is "
                           "'fail' (set overwrite or rename, or remove them)")


async def make_parents(dest: Destination, plans: Sequence[FilePlan]) -> None:
    """Create each target directory once (before any file is opened)."""
    for parent in sorted({posixpath.dirname(p.destination) for p in plans}):
        await dest.makedirs(parent)


def verification_plan(dest: Destination, mode: str) -> VerifiedBy:
    """The check ``verify_file`` will make on this destination."""
    if mode == "auto":
        if "md5" in dest.capabilities.hashes:
            return "server-md5"
        return "server-sha256" if "sha256" in dest.capabilities.hashes else "readback-sha256"
    return {"size": "size", "none": "none"}.get(mode, "readback-sha256")  # type: ignore[return-value]


async def _copy_all(source: Source, dest: Destination, plans: list[FilePlan],
                    settings: Settings, options: CopyOptions,
                    progress: ProgressSubscriber) -> tuple[list[FileResult], FileFerryError | None]:
    transfer = settings.transfer
    gate = asyncio.Semaphore(transfer.max_parallel_threads)
    results = [FileResult(source=p.source, destination=p.destination, size=p.size)
               for p in plans]
    errors: list[FileFerryError] = []

    async def one(i: int, plan: FilePlan) -> None:
        async with gate:
            if errors:
                results[i].status = "CANCELLED"
                return
            try:
                if uses_ranges(dest, plan, transfer.large_file_threshold,
                               transfer.min_range_size, options.verify):
                    ranges = plan_ranges(plan.size, transfer.min_range_size,
                                         transfer.max_ranges)
                    results[i] = await copy_ranges(source, dest, plan, options, progress,
                                                   ranges)
                else:
                    results[i] = await copy_file(source, dest, plan, options, progress)
            except Exception as exc:
                err = exc if isinstance(exc, FileFerryError) else TransferFailed(
                    f"{plan.source}: unexpected error {exc!r}")
                log.error("%s failed: %s", plan.source, err)
                errors.append(err)
                results[i].status = "FAILED"
                results[i].error = err.to_dict()
                progress.file_finished(results[i])

    await make_parents(dest, plans)
    await asyncio.gather(*(one(i, p) for i, p in enumerate(plans)))
    return results, (errors[0] if errors else None)


async def run_transfer(settings: Settings, request: TransferRequest,
                       subscribers: Sequence[ProgressSubscriber] = (),
                       source: Source | None = None, sleep: Sleep | None = None
                       ) -> TransferResult:
    """Carry out (or, with ``dry_run``, plan) one transfer; never raises ``FileFerryError``."""
    tid = request.transfer_id
    progress = Broadcast(subscribers)
    try:
        if not request.sources:
            raise UsageError("give at least one source, e.g. s3://bucket/key")
        name, _ = split_destination(request.destination)
        dsettings = destination_settings(settings, name)
        for text in request.sources:
            parse_s3_uri(text)
        budget = ByteBudget(settings.transfer.memory_budget)
        source = source or S3Source(settings.s3, settings.transfer.default_chunk_size,
                                    max_connections=4 * settings.transfer.max_parallel_threads,
                                    budget=budget)
        retry = RetryPolicy.for_destination(dsettings, sleep)
        async with open_destination(name, dsettings, settings.transfer, retry) as dest:
            plans = await build_plan(source, dest, name, request)
            if dsettings.on_conflict == "fail":
                await refuse_existing(dest, plans, name)
            if request.dry_run:
                check = verification_plan(dest, dsettings.verify)
                files = [FileResult(source=p.source, destination=p.destination, size=p.size,
                                    verified_by=check) for p in plans]
                return TransferResult(transfer_id=tid, status="SUCCEEDED", files=files)
            bucket = bucket_for(name, dsettings)
            options = CopyOptions(verify=dsettings.verify, on_conflict=dsettings.on_conflict,
                                  tag=tid[-8:], retry=retry, bucket=bucket)
            results, error = await _copy_all(source, dest, plans, settings, options, progress)
    except RefusedError as exc:
        return TransferResult.refused(tid, exc)
    except FileFerryError as exc:
        return TransferResult(transfer_id=tid, status="FAILED", files=[], error=exc.to_dict())
    status = "FAILED" if error else "SUCCEEDED"
    return TransferResult(transfer_id=tid, status=status, files=results,
                          error=error.to_dict() if error else None)


_BUCKETS: dict[tuple[int, str, int], TokenBucket] = {}


def bucket_for(name: str, dsettings: DestinationSettings) -> TokenBucket | None:
    """One token bucket per destination and event loop, shared by concurrent transfers."""
    if dsettings.bandwidth_limit is None:
        return None
    key = (id(asyncio.get_running_loop()), name, int(dsettings.bandwidth_limit))
    return _BUCKETS.setdefault(key, TokenBucket(int(dsettings.bandwidth_limit)))
