"""The state store: public methods written once, over a few backend primitives.

A backend (SQLite now, DynamoDB later) is a small key-value store. An item is
addressed by ``(table, pk, sk)``; its value is a JSON-serialisable dict that
always carries an integer ``version``, which only the :class:`Store` sets.
Every backend gives the primitives below exactly the same meaning, and the one
that carries the concurrency is the conditional :meth:`Backend.put`: the
Store builds idempotent creates, optimistic updates, append-only logs and
leases out of it and nothing else.

Tables the Store uses (pk / sk)::

    transfers    transfer_id / "_"           TransferRecord
    files        transfer_id / source         FileRecord
    audit        transfer_id / seq (padded)   AuditEntry        append-only
    idempotency  scope / key                  {"value": ...}    written once
    checkpoints  execution_id / "_"           {"checkpoint": ...}
    history      execution_id / seq (padded)  {"event": ...}    append-only
    executions   execution_id / "_"           transfer_id, status, active
    leases       execution_id / "_"           owner, heartbeat, ttl, expires_at
    outbox       transfer_id / seq (padded)   OutboxEntry       work to deliver later
                 "~pending" / transfer_id     marker: the transfer has pending work
    conversations  user / session_id          the agent's chat  expires_at

``TABLES`` lists them with the attribute, if any, that a backend with expiry
(DynamoDB's TTL) may reap items by: epoch seconds after which the item is
worthless. The Store never relies on reaping; it only allows it.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import math
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Protocol

from fileferry.store.models import (
    FINAL_STATUSES,
    AuditEntry,
    FileRecord,
    OutboxEntry,
    TransferRecord,
    refuse_secrets,
)

__all__ = ["OUTBOX_RETENTION", "PENDING_PK", "TABLES", "TTL_ATTRIBUTE", "Backend",
           "ConditionFailed", "Row", "SchemaEntry", "Store", "StoreConflict", "TransferNotFound",
           "refuse_secrets"]

Item = dict[str, Any]
ONE = "_"  # the sort key of a partition holding a single item (DynamoDB keys cannot be "")
SEQ_WIDTH = 12
TTL_ATTRIBUTE = "expires_at"
OUTBOX_RETENTION = 30 * 24 * 3600
"""Seconds settled outbox work (delivered or failed for good) is kept; the audit
trail keeps the facts (``work_delivered``, ``work_failed``) for good."""
PENDING_PK = "~pending"
"""The outbox partition of markers, one per transfer with pending work: a drain
queries it instead of scanning every entry ever queued."""
# Every table the Store uses, and its expiry attribute (None: items never expire).
# A new table, say the identity issue's sessions, is one more line here.
TABLES: dict[str, str | None] = {
    "transfers": None,
    "files": None,
    "audit": None,
    "idempotency": None,
    "checkpoints": None,
    "history": None,
    "executions": None,
    "leases": TTL_ATTRIBUTE,
    "outbox": TTL_ATTRIBUTE,  # settled work expires after OUTBOX_RETENTION
    "conversations": TTL_ATTRIBUTE,  # the agent's chats (agent.persist_conversations)
    "ledger": None,  # the routes' delivery ledger (store/ledger.py)
    "route_state": None,
    "plaintext": None,
}


class ConditionFailed(Exception):
    """A conditional put found the item present (``if_absent``) or at another version."""


class StoreConflict(RuntimeError):
    """An optimistic update lost the race to other writers too many times in a row."""


class TransferNotFound(KeyError):
    """No transfer with that id."""


@dataclass(frozen=True)
class Row:
    pk: str
    sk: str
    item: Item


@dataclass(frozen=True)
class SchemaEntry:
    """One table (or SQLite file) ``create_schema`` looked at: ``created`` or ``existed``."""

    table: str
    status: str
    ttl: str | None = None

    def to_dict(self) -> dict[str, str | None]:
        return {"table": self.table, "status": self.status, "ttl": self.ttl}


class Backend(Protocol):
    """The primitives; each backend implements them with identical semantics."""

    async def get(self, table: str, pk: str, sk: str) -> Item | None:
        """The item, or None when there is none."""

    async def put(self, table: str, pk: str, sk: str, item: Item, *, if_absent: bool = False,
                  if_version: int | None = None) -> None:
        """Write ``item`` whole, atomically; raise :class:`ConditionFailed` when
        ``if_absent`` and the item exists, or ``if_version`` is given and the item
        is missing or its ``version`` differs. Both conditions at once: ValueError."""

    async def delete(self, table: str, pk: str, sk: str) -> None:
        """Remove the item; a missing item is not an error."""

    async def query(self, table: str, pk: str, *, sk_prefix: str = "", limit: int | None = None,
                    reverse: bool = False) -> list[Row]:
        """The partition's items whose sk starts with ``sk_prefix``, ordered by sk
        (descending when ``reverse``), at most ``limit`` of them."""

    async def scan(self, table: str, *, where: Mapping[str, Any] | None = None,
                   limit: int | None = None,
                   start_after: tuple[str, str] | None = None) -> list[Row]:
        """Items of the whole table ordered by (pk, sk), strictly after ``start_after``,
        whose top-level fields equal every value in ``where``; ``limit`` counts matching
        items (a DynamoDB backend pages until it has them)."""

    async def put_many(self, table: str, rows: Sequence[Row]) -> None:
        """Write every row unconditionally (a batch; no condition, no ordering between them)."""

    async def reap(self, table: str, now: float) -> int:
        """Delete the table's items whose expiry attribute (``TABLES``) is before ``now``
        and say how many; a backend whose storage expires items itself (DynamoDB's TTL)
        deletes nothing here and returns 0."""

    async def close(self) -> None:
        """Release connections and threads; the backend is unusable afterwards."""

    async def create_schema(self) -> list[SchemaEntry]:
        """Create whatever storage ``TABLES`` needs (with expiry where the backend has it)
        and say, per table, whether it was created or existed; safe to run again. Every
        other primitive also creates what it needs on first use, where it may."""


def _encode_cursor(row: Row) -> str:
    return base64.urlsafe_b64encode(json.dumps([row.pk, row.sk]).encode()).decode()


def _decode_cursor(cursor: str | None) -> tuple[str, str] | None:
    if cursor is None:
        return None
    try:
        pk, sk = json.loads(base64.urlsafe_b64decode(cursor.encode()))
    except (ValueError, TypeError, binascii.Error) as exc:
        raise ValueError(f"invalid cursor {cursor!r}: pass back a next_cursor unchanged") from exc
    return str(pk), str(sk)


def _seq_key(seq: int) -> str:
    return f"{seq:0{SEQ_WIDTH}d}"


def _expired(lease: Item, now: float) -> bool:
    return lease.get("owner") is None or float(lease["heartbeat"]) + float(lease["ttl"]) < now


class Store:
    """Transfers, files, audit trail, side-effect idempotency, checkpoints and leases.

    Every method is safe against other Stores on the same backend, in this or
    another process: writes are conditional puts, retried after a lost race
    (``upsert_files`` excepted: a batch, last writer wins).
    """

    def __init__(self, backend: Backend, *, clock: Callable[[], float] = time.time,
                 max_attempts: int = 50) -> None:
        self.backend = backend
        self._clock = clock
        self._max_attempts = max_attempts

    async def close(self) -> None:
        await self.backend.close()

    async def create_schema(self) -> list[SchemaEntry]:
        """See :meth:`Backend.create_schema` (``fileferry store init``)."""
        return await self.backend.create_schema()

    async def __aenter__(self) -> Store:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.close()

    # --- the machinery every public method is built from

    async def _put(self, table: str, pk: str, sk: str, value: Item,
                   previous: int | None) -> Item:
        """Write ``value`` as the next version after ``previous`` (None: must be absent)."""
        refuse_secrets(value)
        item = {**value, "version": (previous or 0) + 1}
        await self.backend.put(table, pk, sk, item, if_absent=previous is None,
                               if_version=previous)
        return item

    async def _backoff(self, attempt: int) -> None:
        await asyncio.sleep(random.uniform(0, min(0.002 * 2 ** attempt, 0.05)))

    async def _modify(self, table: str, pk: str, sk: str,
                      change: Callable[[Item | None], Item | None]) -> Item | None:
        """Optimistic read-modify-write. ``change`` gets the current item (or None) and
        returns the new value, or None to leave the item as it is; it may run again
        after a lost race, so it must not have side effects."""
        for attempt in range(self._max_attempts):
            current = await self.backend.get(table, pk, sk)
            value = change(current)
            if value is None:
                return current
            try:
                return await self._put(table, pk, sk, value,
                                       None if current is None else int(current["version"]))
            except ConditionFailed:
                await self._backoff(attempt)
        raise StoreConflict(f"{table}/{pk}/{sk}: still changing under us after "
                            f"{self._max_attempts} attempts")

    async def _append(self, table: str, pk: str, value: Item) -> int:
        """Add ``value`` after the partition's last item; never overwrites. Returns its seq."""
        for attempt in range(self._max_attempts):
            last = await self.backend.query(table, pk, limit=1, reverse=True)
            seq = int(last[0].sk) + 1 if last else 1
            try:
                await self._put(table, pk, _seq_key(seq), {**value, "seq": seq}, None)
            except ConditionFailed:
                await self._backoff(attempt)
            else:
                return seq
        raise StoreConflict(f"{table}/{pk}: could not append after {self._max_attempts} attempts")

    # --- transfers

    async def create_transfer(self, record: TransferRecord) -> TransferRecord:
        """Store a new transfer; when the id exists already, return the stored one unchanged."""
        try:
            item = await self._put("transfers", record.transfer_id, ONE,
                                   record.model_dump(exclude={"version"}), None)
            stored = TransferRecord.model_validate(item)
        except ConditionFailed:
            existing = await self.get_transfer(record.transfer_id)
            if existing is None:
                raise StoreConflict(f"{record.transfer_id} vanished while being created") from None
            stored = existing
        await self._track_execution(stored)
        return stored

    async def get_transfer(self, transfer_id: str) -> TransferRecord | None:
        item = await self.backend.get("transfers", transfer_id, ONE)
        return None if item is None else TransferRecord.model_validate(item)

    async def update_transfer(self, transfer_id: str, /, **changes: Any) -> TransferRecord:
        """Apply ``changes`` to the latest version (re-applied after a lost race).

        ``updated_at`` is set from the clock unless given. Raises TransferNotFound,
        or ValueError for unknown fields or the id/version.
        """
        settable = set(TransferRecord.model_fields) - {"transfer_id", "version"}
        bad = set(changes) - settable
        if bad:
            raise ValueError(f"update_transfer cannot set {', '.join(sorted(bad))}")

        def change(current: Item | None) -> Item:
            if current is None:
                raise TransferNotFound(transfer_id)
            data = {**current, "updated_at": self._clock(), **changes}
            return TransferRecord.model_validate(data).model_dump(exclude={"version"})

        item = await self._modify("transfers", transfer_id, ONE, change)
        assert item is not None
        record = TransferRecord.model_validate(item)
        await self._track_execution(record)
        return record

    async def list_transfers(self, status: str | None = None, requester: str | None = None,
                             destination: str | None = None, limit: int = 50,
                             cursor: str | None = None
                             ) -> tuple[list[TransferRecord], str | None]:
        """One page of transfers matching every filter given, ordered by transfer_id;
        ``next_cursor`` is None on the last page."""
        if limit < 1:
            raise ValueError("limit must be at least 1")
        where = {k: v for k, v in (("status", status), ("requester", requester),
                                   ("destination", destination)) if v is not None}
        rows = await self.backend.scan("transfers", where=where or None, limit=limit + 1,
                                       start_after=_decode_cursor(cursor))
        page = rows[:limit]
        next_cursor = _encode_cursor(page[-1]) if len(rows) > limit else None
        return [TransferRecord.model_validate(r.item) for r in page], next_cursor

    # --- files

    async def upsert_file(self, transfer_id: str, record: FileRecord) -> FileRecord:
        """Create or replace the file keyed by its source (last writer wins)."""
        value = record.model_dump(exclude={"version"})
        item = await self._modify("files", transfer_id, record.source, lambda _: value)
        return FileRecord.model_validate(item)

    async def upsert_files(self, transfer_id: str, records: Sequence[FileRecord]) -> None:
        """:meth:`upsert_file` for many files in one batch write (unconditional)."""
        current = await asyncio.gather(*(self.backend.get("files", transfer_id, r.source)
                                         for r in records))
        rows = []
        for record, item in zip(records, current, strict=True):
            value = record.model_dump(exclude={"version"})
            refuse_secrets(value)
            version = 1 + (int(item["version"]) if item else 0)
            rows.append(Row(transfer_id, record.source, {**value, "version": version}))
        if rows:
            await self.backend.put_many("files", rows)

    async def get_files(self, transfer_id: str) -> list[FileRecord]:
        """The transfer's files, ordered by source."""
        rows = await self.backend.query("files", transfer_id)
        return [FileRecord.model_validate(r.item) for r in rows]

    # --- audit trail

    async def append_audit(self, transfer_id: str, event: str, detail: Mapping[str, Any],
                           at: float) -> int:
        """Add an entry after the last one (never overwrites one); returns its seq."""
        return await self._append("audit", transfer_id,
                                  {"event": event, "detail": dict(detail), "at": at})

    async def audit(self, transfer_id: str) -> list[AuditEntry]:
        rows = await self.backend.query("audit", transfer_id)
        return [AuditEntry.model_validate(r.item) for r in rows]

    # --- idempotency of side effects

    async def record_once(self, scope: str, key: str,
                          value: Mapping[str, Any]) -> tuple[bool, dict[str, Any]]:
        """(True, value) for the first caller; (False, what the first caller stored) after."""
        try:
            await self._put("idempotency", scope, key, {"value": dict(value)}, None)
        except ConditionFailed:
            stored = await self.backend.get("idempotency", scope, key)
            if stored is None:
                raise StoreConflict(f"{scope}/{key} vanished after being recorded") from None
            return False, dict(stored["value"])
        return True, dict(value)

    async def recorded(self, scope: str, key: str) -> dict[str, Any] | None:
        """What :meth:`record_once` kept for ``(scope, key)``, or None."""
        item = await self.backend.get("idempotency", scope, key)
        return None if item is None else dict(item["value"])

    async def update_recorded(self, scope: str, key: str,
                              change: Callable[[dict[str, Any] | None], dict[str, Any] | None]
                              ) -> dict[str, Any] | None:
        """Change what :meth:`record_once` kept for ``(scope, key)`` (None when absent),
        as an optimistic read-modify-write: ``change`` returns the new value, or None
        to keep the current one, and may run again after a lost race. Returns what
        is stored afterwards."""
        def wrapped(current: Item | None) -> Item | None:
            value = change(None if current is None else dict(current["value"]))
            return None if value is None else {"value": dict(value)}

        item = await self._modify("idempotency", scope, key, wrapped)
        return None if item is None else dict(item["value"])

    # --- the outbox: side-effect work (tickets) delivered after an outage

    async def enqueue_work(self, transfer_id: str, key: str, op: str,
                           payload: Mapping[str, Any], at: float) -> bool:
        """Queue ``op`` for the transfer after its other work, unless work with this
        ``key`` was queued before (delivered or not); True when queued now."""
        if any(e.key == key for e in await self.work(transfer_id)):
            return False
        await self._mark_pending(transfer_id)  # first: work is never queued unmarked
        await self._append("outbox", transfer_id, {"key": key, "op": op,
                                                   "payload": dict(payload),
                                                   "state": "pending", "attempts": 0,
                                                   "last_error": None, "at": at})
        await self._mark_pending(transfer_id)  # again: a settle may have cleared it between
        return True

    async def _mark_pending(self, transfer_id: str) -> None:
        await self._modify("outbox", PENDING_PK, transfer_id,
                           lambda current: None if current else {"transfer_id": transfer_id})

    async def _unmark_if_settled(self, transfer_id: str) -> None:
        """Drop the marker once nothing is pending; put it back if work was queued
        meanwhile (``enqueue_work`` marks before and after appending)."""
        if any(e.state == "pending" for e in await self.work(transfer_id)):
            return
        await self.backend.delete("outbox", PENDING_PK, transfer_id)
        if any(e.state == "pending" for e in await self.work(transfer_id)):
            await self._mark_pending(transfer_id)

    async def work(self, transfer_id: str) -> list[OutboxEntry]:
        """The transfer's queued work in the order it was queued."""
        rows = await self.backend.query("outbox", transfer_id)
        return [OutboxEntry.model_validate(r.item) for r in rows]

    async def transfers_with_pending_work(self) -> list[str]:
        """The transfers whose work waits, from their markers (no scan of settled work)."""
        return [r.sk for r in await self.backend.query("outbox", PENDING_PK)]

    async def reap_settled_work(self) -> int:
        """Delete settled work past its expiry where the backend does not do it itself
        (SQLite); how many entries went. Pending work never expires."""
        return await self.backend.reap("outbox", self._clock())

    async def settle_work(self, transfer_id: str, seq: int, *, state: str,
                          error: str | None = None) -> None:
        """Record an attempt at queued work: ``state`` pending (it failed, try again
        later), done, or failed (it never will succeed). Settled work expires after
        ``OUTBOX_RETENTION`` seconds; pending work has no expiry."""
        settled = state != "pending"
        expires = math.ceil(self._clock() + OUTBOX_RETENTION)

        def change(current: Item | None) -> Item:
            if current is None:
                raise KeyError(f"no queued work {transfer_id}/{seq}")
            kept = {k: v for k, v in current.items() if k != TTL_ATTRIBUTE}
            return {**kept, "state": state, "last_error": error,
                    "attempts": int(current["attempts"]) + 1,
                    **({TTL_ATTRIBUTE: expires} if settled else {})}

        await self._modify("outbox", transfer_id, _seq_key(seq), change)
        if settled:
            await self._unmark_if_settled(transfer_id)

    # --- workflow executions

    async def save_checkpoint(self, execution_id: str, checkpoint: Mapping[str, Any]) -> None:
        """Replace the execution's checkpoint; a ``transfer_id`` in it links the transfer."""
        value = {"checkpoint": dict(checkpoint)}
        await self._modify("checkpoints", execution_id, ONE, lambda _: value)
        transfer_id = checkpoint.get("transfer_id")
        await self._modify("executions", execution_id, ONE, lambda cur: _execution(
            cur, execution_id, checkpointed=True,
            transfer_id=transfer_id if isinstance(transfer_id, str) else None))

    async def load_checkpoint(self, execution_id: str) -> dict[str, Any] | None:
        item = await self.backend.get("checkpoints", execution_id, ONE)
        return None if item is None else dict(item["checkpoint"])

    async def append_history(self, execution_id: str, event: Mapping[str, Any]) -> int:
        """Add an event after the last one; returns its seq (1, 2, ...)."""
        return await self._append("history", execution_id, {"event": dict(event)})

    async def history(self, execution_id: str) -> list[dict[str, Any]]:
        rows = await self.backend.query("history", execution_id)
        return [dict(r.item["event"]) for r in rows]

    async def unfinished_executions(self) -> list[str]:
        """Executions with a checkpoint whose transfer is not (known to be) final."""
        rows = await self.backend.scan("executions", where={"active": True})
        unfinished = []
        for row in rows:
            # A crash between the transfer's final update and this row's leaves it active.
            transfer_id = row.item.get("transfer_id")
            transfer = await self.get_transfer(transfer_id) if transfer_id else None
            if transfer is None or transfer.status not in FINAL_STATUSES:
                unfinished.append(row.pk)
        return unfinished

    async def _track_execution(self, record: TransferRecord) -> None:
        execution_id = record.execution_id
        if execution_id is not None:
            await self._modify("executions", execution_id, ONE, lambda cur: _execution(
                cur, execution_id, transfer_id=record.transfer_id, status=record.status))

    # --- leases

    async def acquire_lease(self, execution_id: str, owner: str, now: float,
                            ttl: float) -> bool:
        """Take the lease if it is free, expired (heartbeat + ttl < now) or ours already."""
        return await self._claim(execution_id, owner, now, ttl, renew=False)

    async def renew_lease(self, execution_id: str, owner: str, now: float, ttl: float) -> bool:
        """Move our heartbeat to ``now``; False when the lease is not ours (any more)."""
        return await self._claim(execution_id, owner, now, ttl, renew=True)

    async def release_lease(self, execution_id: str, owner: str) -> bool:
        """Give the lease up; False (and nothing changes) when ``owner`` does not hold it."""
        for attempt in range(self._max_attempts):
            current = await self.backend.get("leases", execution_id, ONE)
            if current is None or current.get("owner") != owner:
                return False
            try:
                # A released lease is worthless from now on: expiry may reap it.
                await self._put("leases", execution_id, ONE,
                                {"owner": None, "heartbeat": 0.0, "ttl": 0.0,
                                 TTL_ATTRIBUTE: math.ceil(self._clock())},
                                int(current["version"]))
            except ConditionFailed:
                await self._backoff(attempt)
            else:
                return True
        raise StoreConflict(f"lease {execution_id}: could not release")

    async def lease_owner(self, execution_id: str, now: float) -> str | None:
        current = await self.backend.get("leases", execution_id, ONE)
        if current is None or _expired(current, now):
            return None
        return str(current["owner"])

    async def _claim(self, execution_id: str, owner: str, now: float, ttl: float,
                     renew: bool) -> bool:
        for _ in range(self._max_attempts):
            current = await self.backend.get("leases", execution_id, ONE)
            held_by = None if current is None else current.get("owner")
            if renew and held_by != owner:
                return False
            if current is not None and held_by != owner and not _expired(current, now):
                return False
            try:
                await self._put("leases", execution_id, ONE,
                                {"owner": owner, "heartbeat": now, "ttl": ttl,
                                 TTL_ATTRIBUTE: math.ceil(now + ttl)},
                                None if current is None else int(current["version"]))
            except ConditionFailed:
                continue  # someone wrote in between: look again at what they wrote
            return True
        return False


def _execution(current: Item | None, execution_id: str, *, checkpointed: bool = False,
               transfer_id: str | None = None, status: str | None = None) -> Item | None:
    """The executions row after a change, or None when nothing changes."""
    row = dict(current or {"execution_id": execution_id, "transfer_id": None,
                           "status": "RUNNING", "checkpointed": False})
    row.pop("version", None)
    if transfer_id is not None:
        row["transfer_id"] = transfer_id
    if status is not None:
        row["status"] = status
    row["checkpointed"] = row["checkpointed"] or checkpointed
    row["active"] = row["checkpointed"] and row["status"] not in FINAL_STATUSES
    if current is not None and all(current.get(k) == v for k, v in row.items()):
        return None
    return row
