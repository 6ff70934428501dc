"""The state store: transfers, files, audit trail, checkpoints and leases.

``open_store(settings.store.url)`` gives a :class:`Store` over the backend the
URL names; every backend offers the same few primitives (``base.Backend``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from fileferry.store.base import (
    Backend,
    ConditionFailed,
    Row,
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

__all__ = [
    "FINAL_STATUSES",
    "AuditEntry",
    "Backend",
    "ConditionFailed",
    "FileRecord",
    "FileRecordStatus",
    "OutboxEntry",
    "Row",
    "SqliteBackend",
    "Store",
    "StoreConflict",
    "StoreProgress",
    "TransferNotFound",
    "TransferRecord",
    "TransferRecordStatus",
    "open_store",
    "refuse_secrets",
]

SQLITE_PREFIX = "sqlite:///"


def open_store(url: str, *, clock: Callable[[], float] = time.time) -> Store:
    """A Store for ``sqlite:///PATH`` (``~`` expanded; four slashes for an absolute path;
    ``sqlite:///:memory:`` for a private in-memory one). Nothing is opened until first
    use, which creates the parent directories and the schema."""
    if url.startswith(SQLITE_PREFIX):
        path = url[len(SQLITE_PREFIX):]
        if not path:
            raise ValueError(f"store.url {url!r} names no file: use sqlite:///PATH")
        backend = SqliteBackend(path if path == ":memory:" else Path(path).expanduser())
        return Store(backend, clock=clock)
    if url.startswith("dynamodb://"):
        raise NotImplementedError("DynamoDB arrives with the API issue")
    raise ValueError(f"store.url {url!r} is not supported: use sqlite:///PATH")
