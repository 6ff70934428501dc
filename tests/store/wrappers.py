"""Backend wrappers for the store tests: count the calls, or run something before a put."""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from fileferry.store import Backend, Row, SchemaEntry


class CountingBackend:
    """Delegates every primitive and counts the calls per primitive and table."""

    def __init__(self, inner: Backend) -> None:
        self.inner = inner
        self.calls: Counter[tuple[str, str]] = Counter()
        # Runs (once each) just before the next put with a condition: simulates a racer.
        self.before_conditional_put: list[Callable[[], Awaitable[None]]] = []

    def writes(self, table: str) -> int:
        return sum(n for (op, t), n in self.calls.items()
                   if t == table and op in ("put", "put_many", "delete"))

    async def get(self, table: str, pk: str, sk: str) -> dict[str, Any] | None:
        self.calls["get", table] += 1
        return await self.inner.get(table, pk, sk)

    async def put(self, table: str, pk: str, sk: str, item: dict[str, Any], *,
                  if_absent: bool = False, if_version: int | None = None) -> None:
        self.calls["put", table] += 1
        if (if_absent or if_version is not None) and self.before_conditional_put:
            await self.before_conditional_put.pop(0)()
        await self.inner.put(table, pk, sk, item, if_absent=if_absent, if_version=if_version)

    async def delete(self, table: str, pk: str, sk: str) -> None:
        self.calls["delete", table] += 1
        await self.inner.delete(table, pk, sk)

    async def query(self, table: str, pk: str, *, sk_prefix: str = "", limit: int | None = None,
                    reverse: bool = False) -> list[Row]:
        self.calls["query", table] += 1
        return await self.inner.query(table, pk, sk_prefix=sk_prefix, limit=limit,
                                      reverse=reverse)

    async def scan(self, table: str, *, where: Mapping[str, Any] | None = None,
                   limit: int | None = None,
                   start_after: tuple[str, str] | None = None) -> list[Row]:
        self.calls["scan", table] += 1
        return await self.inner.scan(table, where=where, limit=limit, start_after=start_after)

    async def reap(self, table: str, now: float) -> int:
        self.calls["reap", table] += 1
        return await self.inner.reap(table, now)

    async def put_many(self, table: str, rows: Sequence[Row]) -> None:
        self.calls["put_many", table] += 1
        await self.inner.put_many(table, rows)

    async def create_schema(self) -> list[SchemaEntry]:
        return await self.inner.create_schema()

    async def close(self) -> None:
        await self.inner.close()
