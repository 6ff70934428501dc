"""The state store: transfers, files, audit trail, checkpoints and leases.

``open_store(settings.store.url)`` gives a :class:`Store` over the backend the
URL names (``sqlite:///PATH`` or ``dynamodb://?region=...``, see ``urls``);
every backend offers the same few primitives (``base.Backend``). The DynamoDB
backend (and boto3) is imported only when a URL asks for it.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from fileferry.store.base import (
    TABLES,
    Backend,
    ConditionFailed,
    Row,
    SchemaEntry,
    Store,
    StoreConflict,
    TransferNotFound,
    refuse_secrets,
)
from fileferry.store.models import (
    FINAL_STATUSES,
    AuditEntry,
    FileRecord,
    FileRecordStatus,
    OutboxEntry,
    TransferRecord,
    TransferRecordStatus,
)
from fileferry.store.progress import StoreProgress
from fileferry.store.sqlite import SqliteBackend
from fileferry.store.urls import DynamoUrl, SqliteUrl, parse_store_url

__all__ = [
    "FINAL_STATUSES",
    "TABLES",
    "AuditEntry",
    "Backend",
    "ConditionFailed",
    "DynamoUrl",
    "FileRecord",
    "FileRecordStatus",
    "OutboxEntry",
    "Row",
    "SchemaEntry",
    "SqliteBackend",
    "SqliteUrl",
    "Store",
    "StoreConflict",
    "StoreProgress",
    "TransferNotFound",
    "TransferRecord",
    "TransferRecordStatus",
    "init_store",
    "open_store",
    "parse_store_url",
    "refuse_secrets",
]

def open_store(url: str, *, clock: Callable[[], float] = time.time) -> Store:
    """A Store for ``url`` (see ``urls``; ValueError saying the accepted forms otherwise).

    Nothing is opened or contacted until first use, which creates what is missing:
    the SQLite file's directories and schema, or the DynamoDB tables.
    """
    try:
        parsed = parse_store_url(url)
    except ValueError as exc:
        raise ValueError(f"store.url {exc}") from None
    backend: Backend
    if isinstance(parsed, SqliteUrl):
        backend = SqliteBackend(parsed.path)
    else:
        from fileferry.store.dynamodb import DynamoBackend

        backend = DynamoBackend(region=parsed.region, table_prefix=parsed.table_prefix,
                                endpoint_url=parsed.endpoint_url)
    return Store(backend, clock=clock)


async def init_store(url: str) -> list[SchemaEntry]:
    """Create the store's schema or tables now (``fileferry store init``); safe to re-run."""
    async with open_store(url) as store:
        return await store.create_schema()
