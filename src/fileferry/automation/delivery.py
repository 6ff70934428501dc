"""After the whole batch is verified: the ledger, the trigger file, the source actions.

``post_delivery`` is the workflow's ``PostDelivery`` step (after
``VerifyDelivery``, so it never runs for a batch with a failed file). For a
transfer that is not a route's it does nothing. It is idempotent: entries are
marked delivered once, the trigger file is replaced with the same content, and
an object whose actions were recorded is not acted on again.

For a batch that failed, the workflow's ``SettleDelivered`` state calls it
with ``after_failure``: the files verified and renamed into place before the
failure *are* delivered, so they are recorded in the ledger (a rerun does not
send them again) and get their actions, each after a fresh check that the
destination still holds it at the delivered size (a file that is gone is
recorded ``skipped`` and its source kept). The trigger file is not written: it
promises the whole batch; the rerun that delivers the rest writes it.

Action failures do not fail the transfer (its files are delivered and
verified); each is written to the audit trail (``post_delivery_failed``) and to
the object's ledger entry, and ``fileferry run`` reports them and exits 1.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import posixpath
from datetime import datetime

from fileferry.automation.batch import Batch, BatchFile, load_batch
from fileferry.automation.naming import render
from fileferry.automation.objects import SourceBucket
from fileferry.automation.settings import RouteSettings
from fileferry.endpoints.registry import open_destination
from fileferry.errors import ConfigError, FileFerryError, VerificationFailed
from fileferry.paths import split_destination, target_dir, target_path
from fileferry.store import Store
from fileferry.store.ledger import Ledger, LedgerEntry
from fileferry.store.models import FileRecord
from fileferry.transfer.copy import place, remove_quietly, temp_name
from fileferry.workflow.models import PostDeliveryIn, PostDeliveryOut
from fileferry.workflow.steps.deps import Deps

__all__ = ["mark_delivered", "post_delivery", "route_of", "settle_failed_batch"]

ACTION_CONCURRENCY = 8


def route_of(deps: Deps, route_name: str) -> RouteSettings:
    try:
        return deps.settings.routes[route_name]
    except KeyError:
        raise ConfigError(f"route {route_name!r} is no longer in the configuration; its files "
                          "were delivered, but its trigger file and actions were not done"
                          ) from None


async def mark_delivered(store: Store, ledger: Ledger, batch: Batch, transfer_id: str,
                         at: float) -> dict[str, tuple[BatchFile, FileRecord]]:
    """Mark every delivered file of the batch in the ledger; returns them by source."""
    records = {f.source: f for f in await store.get_files(transfer_id)}
    plain = await ledger.plaintext(transfer_id)
    delivered = {}
    for item in batch.files:
        record = records.get(item.source)
        if record is None or record.status != "DELIVERED":
            continue
        delivered[item.source] = (item, record)
        fields: dict[str, object] = {"state": "delivered", "destination": record.destination,
                                     "delivered_at": at}
        if item.source in plain:
            fields.update(sha256=plain[item.source][0], ciphertext_sha256=record.sha256,
                          ciphertext_size=record.size)
        else:
            fields.update(sha256=record.sha256)
        current = await ledger.update(batch.route, item.key, item.etag, transfer_id)
        if current is not None and current.state != "delivered":
            await ledger.update(batch.route, item.key, item.etag, transfer_id, **fields)
    return delivered


def _manifest(kind: str, transfer_id: str, route: str, rows: list[tuple[str, int, str]]
              ) -> bytes:
    if kind == "json":
        files = [{"name": n, "size": s, "sha256": h} for n, s, h in rows]
        return (json.dumps({"route": route, "transfer_id": transfer_id, "files": files},
                           indent=2) + "\n").encode()
    if kind == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["name", "size", "sha256"])
        writer.writerows(rows)
        return out.getvalue().encode()
    return b""


async def _write_trigger(deps: Deps, route: RouteSettings, batch: Batch, transfer_id: str,
                         destination: str, records: list[FileRecord]) -> str:
    """Write the trigger file under a temporary name, check its size, rename it into place
    (replacing an older one of the same name)."""
    settings = route.options.trigger_file
    assert settings is not None
    name, path = split_destination(destination)
    dsettings = deps.secrets.destination(name)
    when = datetime.fromtimestamp(batch.run_at, route.timezone)
    async with open_destination(name, dsettings, deps.settings.transfer) as dest:
        directory = target_dir(dest.root, path, name)
        rows = sorted((posixpath.relpath(r.destination, directory), r.size, r.sha256 or "")
                      for r in records)
        seq = batch.files[0].seq if batch.files else 0
        rendered = render(settings.name, {"transfer_id": transfer_id, "route": batch.route,
                                          "seq": seq, "count": len(rows)}, when)
        final = target_path(dest.root, directory, rendered)
        body = _manifest(settings.content, transfer_id, batch.route, rows)
        tmp = temp_name(final, transfer_id[-8:])
        writer = await dest.open_write(tmp)
        try:
            if body:
                await writer.write(body)
            await writer.commit()
        except BaseException:
            await writer.abort()
            await remove_quietly(dest, tmp)
            raise
        info = await dest.stat(tmp)
        if info is None or info.size != len(body):
            await remove_quietly(dest, tmp)
            raise VerificationFailed(f"trigger file {final}: wrote {len(body)} bytes, found "
                                     f"{'nothing' if info is None else info.size}")
        return await place(dest, tmp, final, "overwrite")


async def _act(bucket: SourceBucket, route: RouteSettings, entry: LedgerEntry
               ) -> tuple[dict[str, str], str | None]:
    """Run the route's actions on one delivered object; (outcome per action, version)."""
    post = route.options.post_delivery
    assert post is not None
    wanted = [a for a, on in (("tag", bool(post.tags)),
                              ("archive", post.archive_prefix is not None),
                              ("delete", post.delete)) if on]
    now = await bucket.head(entry.bucket, entry.key)
    if now is None or now[0] != entry.etag:
        why = ("skipped: the object is gone" if now is None else
               f"skipped: the object changed since it was sent (ETag {now[0]})")
        return dict.fromkeys(wanted, why), None
    outcome: dict[str, str] = {}
    for action in wanted:
        if any(v.startswith("failed") for v in outcome.values()):
            outcome[action] = "skipped: an earlier action failed"
            continue
        try:
            if action == "tag":
                await bucket.add_tags(entry.bucket, entry.key, post.tags)
            elif action == "archive":
                location = route.archive_location()
                assert location is not None
                relative = entry.key[len(route.source.prefix):]
                await bucket.copy(entry.bucket, entry.key, entry.etag, location[0],
                                  location[1] + relative)
            else:
                await bucket.delete(entry.bucket, entry.key)
        except FileFerryError as exc:
            outcome[action] = f"failed: {exc}"
        else:
            outcome[action] = "done"
    return outcome, now[1]


async def _actions(deps: Deps, ledger: Ledger, route: RouteSettings, batch: Batch,
                   transfer_id: str, delivered: dict[str, tuple[BatchFile, FileRecord]]
                   ) -> int:
    bucket = SourceBucket(deps.settings.s3)
    entries = {e.key: e for e in await ledger.entries(batch.route)
               if e.transfer_id == transfer_id and e.state == "delivered"}
    gate = asyncio.Semaphore(ACTION_CONCURRENCY)
    failed = 0

    async def one(item: BatchFile) -> None:
        nonlocal failed
        entry = entries.get(item.key)
        if entry is None or entry.actions:  # not ours, or acted on by an earlier attempt
            return
        async with gate:
            outcome, version = await _act(bucket, route, entry)
        await ledger.update(batch.route, item.key, item.etag, transfer_id, actions=outcome,
                            version_id=version)
        bad = any(v.startswith("failed") for v in outcome.values())
        failed += bad
        await deps.store.append_audit(transfer_id, "post_delivery_failed" if bad
                                      else "post_delivery", {"object": item.source,
                                                             "actions": outcome}, deps.clock())

    await asyncio.gather(*(one(item) for item, _ in delivered.values()))
    return failed


async def _still_there(deps: Deps, destination: str,
                       delivered: dict[str, tuple[BatchFile, FileRecord]]
                       ) -> tuple[dict[str, tuple[BatchFile, FileRecord]], dict[str, str]]:
    """(the delivered files the destination holds at their size, source -> why not)."""
    name, _ = split_destination(destination)
    present, missing = {}, {}
    try:
        async with open_destination(name, deps.secrets.destination(name),
                                    deps.settings.transfer) as dest:
            for source, (item, record) in delivered.items():
                info = await dest.stat(record.destination)
                if info is not None and info.size == record.size:
                    present[source] = (item, record)
                else:
                    found = "nothing" if info is None else f"{info.size} bytes"
                    missing[source] = (f"skipped: the batch failed and {record.destination} "
                                       f"holds {found}, not {record.size} bytes; the source "
                                       "is kept")
    except FileFerryError as exc:
        unchecked = {s: f"failed: the batch failed and the delivered file could not be "
                        f"checked ({exc}); act on it by hand" for s in delivered
                     if s not in present and s not in missing}
        missing.update(unchecked)
    return present, missing


async def settle_failed_batch(deps: Deps, ledger: Ledger, route: RouteSettings, batch: Batch,
                              transfer_id: str, destination: str) -> PostDeliveryOut:
    """After a failed batch: ledger and actions for what was delivered; no trigger file."""
    delivered = await mark_delivered(deps.store, ledger, batch, transfer_id, deps.clock())
    post = route.options.post_delivery
    failed = 0
    if post is not None and delivered:
        present, missing = await _still_there(deps, destination, delivered)
        wanted = [a for a, on in (("tag", bool(post.tags)),
                                  ("archive", post.archive_prefix is not None),
                                  ("delete", post.delete)) if on]
        for source, why in missing.items():
            item = delivered[source][0]
            entry = await ledger.update(batch.route, item.key, item.etag, transfer_id)
            if entry is not None and not entry.actions:
                await ledger.update(batch.route, item.key, item.etag, transfer_id,
                                    actions=dict.fromkeys(wanted, why))
                await deps.store.append_audit(transfer_id, "post_delivery_failed"
                                              if why.startswith("failed") else "post_delivery",
                                              {"object": source, "why": why}, deps.clock())
            failed += why.startswith("failed")
        failed += await _actions(deps, ledger, route, batch, transfer_id, present)
    return PostDeliveryOut(route=batch.route, files=len(delivered), actions_failed=failed)


async def post_delivery(inp: PostDeliveryIn, deps: Deps) -> PostDeliveryOut:
    record = await deps.store.get_transfer(inp.transfer_id)
    route_name = record.options.get("route") if record is not None else None
    if record is None or not route_name:
        return PostDeliveryOut()
    route = route_of(deps, str(route_name))
    batch = await load_batch(deps.store, inp.transfer_id)
    if batch is None:
        raise ConfigError(f"{inp.transfer_id}: the batch of route {route_name} is missing")
    ledger = Ledger(deps.store)
    if inp.after_failure:
        return await settle_failed_batch(deps, ledger, route, batch, inp.transfer_id,
                                         record.destination)
    delivered = await mark_delivered(deps.store, ledger, batch, inp.transfer_id, deps.clock())
    trigger = None
    if route.options.trigger_file is not None and delivered:
        trigger = await _write_trigger(deps, route, batch, inp.transfer_id, record.destination,
                                       [r for _, r in delivered.values()])
        first, _ = await deps.store.record_once("trigger_file", inp.transfer_id,
                                                {"path": trigger})
        if first:
            await deps.store.append_audit(inp.transfer_id, "trigger_file_written",
                                          {"path": trigger}, deps.clock())
    failed = 0
    if route.options.post_delivery is not None:
        failed = await _actions(deps, ledger, route, batch, inp.transfer_id, delivered)
    return PostDeliveryOut(route=batch.route, files=len(delivered), trigger_file=trigger,
                           actions_failed=failed)
