"""The SQLite backend: one generic table of JSON items, shared safely between processes.

Every blocking call runs on one dedicated thread that owns the connection, so
calls from one process are serialised and the event loop never waits on the
disk. WAL mode lets readers in other processes carry on while one writes;
every write starts with ``BEGIN IMMEDIATE``, which takes the database's write
lock before the condition is read, so a conditional put is atomic across
processes (a waiting writer retries for up to ``timeout`` seconds).
"""

from __future__ import annotations

import asyncio
import functools
import json
import random
import sqlite3
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from fileferry.store.base import TABLES, ConditionFailed, Item, Row, SchemaEntry

__all__ = ["SqliteBackend"]

T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS items (
    tbl     TEXT    NOT NULL,
    pk      TEXT    NOT NULL,
    sk      TEXT    NOT NULL,
    version INTEGER NOT NULL,
    item    TEXT    NOT NULL,
    PRIMARY KEY (tbl, pk, sk)
) WITHOUT ROWID
"""


def _dumps(item: Item) -> str:
    return json.dumps(item, separators=(",", ":"), allow_nan=False)


def _rows(cursor: sqlite3.Cursor) -> list[Row]:
    return [Row(pk, sk, json.loads(text)) for pk, sk, text in cursor.fetchall()]


class SqliteBackend:
    """The store's primitives over a SQLite file (or ``:memory:``, for one process)."""

    def __init__(self, path: str | Path, *, timeout: float = 30.0) -> None:
        self.path = str(path)
        self._timeout = timeout
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fileferry-sqlite")
        self._conn: sqlite3.Connection | None = None
        self._closed = False
        self._schema_existed = True  # set when the connection opens

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        if self._closed:
            raise RuntimeError(f"the store at {self.path} is closed")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(fn, *args))

    def _connection(self) -> sqlite3.Connection:
        """Open on first use (on the store's thread): parent directories, WAL, schema."""
        if self._conn is None:
            if self.path != ":memory:":
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            # isolation_level=None: no implicit transactions; writes say BEGIN IMMEDIATE.
            conn = sqlite3.connect(self.path, timeout=self._timeout, isolation_level=None)
            try:
                self._prepare(conn)
            except BaseException:
                conn.close()
                raise
            self._conn = conn
        return self._conn

    def _prepare(self, conn: sqlite3.Connection) -> None:
        # Switching a new file to WAL fails at once with "database is locked" when another
        # process does the same (SQLite skips the busy handler there), so retry it here.
        deadline = time.monotonic() + self._timeout
        while True:
            try:
                if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                    conn.execute("PRAGMA journal_mode=WAL")
                self._schema_existed = conn.execute(
                    "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'items'"
                ).fetchone() is not None
                conn.execute(SCHEMA)
                break
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(random.uniform(0.005, 0.05))
        conn.execute("PRAGMA synchronous=NORMAL")

    def _write(self, body: Callable[[sqlite3.Connection], None]) -> None:
        conn = self._connection()
        conn.execute("BEGIN IMMEDIATE")
        try:
            body(conn)
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    # --- the primitives (see base.Backend for their contract)

    async def get(self, table: str, pk: str, sk: str) -> Item | None:
        def run() -> Item | None:
            found = self._connection().execute(
                "SELECT item FROM items WHERE tbl = ? AND pk = ? AND sk = ?",
                (table, pk, sk)).fetchone()
            return None if found is None else dict(json.loads(found[0]))

        return await self._call(run)

    async def put(self, table: str, pk: str, sk: str, item: Item, *, if_absent: bool = False,
                  if_version: int | None = None) -> None:
        if if_absent and if_version is not None:
            raise ValueError("put: if_absent and if_version exclude each other")
        text = _dumps(item)  # before the lock: an unserialisable item fails without writing
        version = int(item.get("version", 0))

        def body(conn: sqlite3.Connection) -> None:
            if if_absent or if_version is not None:
                found = conn.execute(
                    "SELECT version FROM items WHERE tbl = ? AND pk = ? AND sk = ?",
                    (table, pk, sk)).fetchone()
                if if_absent and found is not None:
                    raise ConditionFailed(f"{table}/{pk}/{sk} exists")
                if if_version is not None and (found is None or found[0] != if_version):
                    held = "missing" if found is None else f"at version {found[0]}"
                    raise ConditionFailed(f"{table}/{pk}/{sk} is {held}, not {if_version}")
            conn.execute("INSERT OR REPLACE INTO items (tbl, pk, sk, version, item) "
                         "VALUES (?, ?, ?, ?, ?)", (table, pk, sk, version, text))

        await self._call(self._write, body)

    async def delete(self, table: str, pk: str, sk: str) -> None:
        def body(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM items WHERE tbl = ? AND pk = ? AND sk = ?", (table, pk, sk))

        await self._call(self._write, body)

    async def query(self, table: str, pk: str, *, sk_prefix: str = "", limit: int | None = None,
                    reverse: bool = False) -> list[Row]:
        sql = ("SELECT pk, sk, item FROM items WHERE tbl = ? AND pk = ? "
               "AND substr(sk, 1, length(?)) = ? "
               f"ORDER BY sk {'DESC' if reverse else 'ASC'} LIMIT ?")
        params = (table, pk, sk_prefix, sk_prefix, -1 if limit is None else limit)
        return await self._call(lambda: _rows(self._connection().execute(sql, params)))

    async def scan(self, table: str, *, where: Mapping[str, Any] | None = None,
                   limit: int | None = None,
                   start_after: tuple[str, str] | None = None) -> list[Row]:
        clauses: list[str] = ["tbl = ?"]
        params: list[Any] = [table]
        for key, value in (where or {}).items():
            if not isinstance(value, str | int | float | bool) and value is not None:
                raise ValueError(f"scan: where[{key!r}] must be a scalar, not {value!r}")
            clauses.append("json_extract(item, ?) IS ?")
            params += [f'$."{key}"', value]
        if start_after is not None:
            clauses.append("(pk, sk) > (?, ?)")
            params += list(start_after)
        sql = (f"SELECT pk, sk, item FROM items WHERE {' AND '.join(clauses)} "
               "ORDER BY pk, sk LIMIT ?")
        params.append(-1 if limit is None else limit)
        return await self._call(lambda: _rows(self._connection().execute(sql, params)))

    async def put_many(self, table: str, rows: Sequence[Row]) -> None:
        values = [(table, r.pk, r.sk, int(r.item.get("version", 0)), _dumps(r.item))
                  for r in rows]

        def body(conn: sqlite3.Connection) -> None:
            conn.executemany("INSERT OR REPLACE INTO items (tbl, pk, sk, version, item) "
                             "VALUES (?, ?, ?, ?, ?)", values)

        await self._call(self._write, body)

    async def reap(self, table: str, now: float) -> int:
        ttl = TABLES.get(table)
        if ttl is None:
            return 0
        deleted: list[int] = []

        def body(conn: sqlite3.Connection) -> None:
            cursor = conn.execute("DELETE FROM items WHERE tbl = ? AND "
                                  "json_extract(item, ?) < ?", (table, f'$."{ttl}"', now))
            deleted.append(cursor.rowcount)

        await self._call(self._write, body)
        return deleted[0] if deleted else 0

    async def create_schema(self) -> list[SchemaEntry]:
        """One table, ``items``, holds every store table; SQLite has no expiry, so
        ``expires_at`` is kept but nothing is reaped."""
        await self._call(self._connection)
        status = "existed" if self._schema_existed else "created"
        return [SchemaEntry(table=f"items in {self.path}", status=status)]

    async def close(self) -> None:
        if self._closed:
            return

        def run() -> None:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

        try:
            await self._call(run)
        finally:
            self._closed = True
            await asyncio.to_thread(self._executor.shutdown)
