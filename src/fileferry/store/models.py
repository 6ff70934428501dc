"""What the state store keeps: transfers, their files, and their audit trail."""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from fileferry.models import VerifiedBy

__all__ = [
    "FINAL_STATUSES",
    "AuditEntry",
    "FileRecord",
    "FileRecordStatus",
    "OutboxEntry",
    "TransferRecord",
    "TransferRecordStatus",
    "refuse_secrets",
]

TransferRecordStatus = Literal["PENDING", "PENDING_APPROVAL", "RUNNING", "SUCCEEDED", "FAILED",
                               "REFUSED", "CANCELLED"]
FileRecordStatus = Literal["PLANNED", "RUNNING", "DELIVERED", "FAILED", "CANCELLED"]

# A transfer in one of these will not change again; its execution is finished.
FINAL_STATUSES: frozenset[str] = frozenset({"SUCCEEDED", "FAILED", "REFUSED", "CANCELLED"})


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    # Maintained by the Store: 1 after the first write, +1 on every write after it.
    version: int = 0


class TransferRecord(_Record):
    transfer_id: str
    execution_id: str | None = None
    requester: str
    sources: list[str]
    destination: str
    options: dict[str, Any] = Field(default_factory=dict)
    status: TransferRecordStatus = "PENDING"
    created_at: float = Field(default_factory=time.time)
    updated_at: float = Field(default_factory=time.time)
    bytes_total: int = 0
    bytes_done: int = 0
    files_total: int = 0
    files_done: int = 0
    tickets: dict[str, str] = Field(default_factory=dict)
    error: dict[str, Any] | None = None


class FileRecord(_Record):
    source: str
    destination: str
    size: int
    bytes_confirmed: int = 0
    status: FileRecordStatus = "PLANNED"
    sha256: str | None = None
    md5: str | None = None
    verified_by: VerifiedBy | None = None
    resume_offset: int = 0
    retries: int = 0
    error: dict[str, Any] | None = None


class AuditEntry(BaseModel):
    """One line of a transfer's audit trail; ``seq`` orders them (1, 2, ...)."""

    model_config = ConfigDict(frozen=True)

    seq: int
    event: str
    detail: dict[str, Any]
    at: float


class OutboxEntry(BaseModel):
    """Work on a side system (tickets) queued while that system was unavailable.

    ``key`` makes queueing idempotent (``create``, ``update:SUCCEEDED``); ``state`` is
    pending until delivered (done) or refused for good (failed)."""

    model_config = ConfigDict(frozen=True)

    seq: int
    key: str
    op: str
    payload: dict[str, Any]
    state: Literal["pending", "done", "failed"]
    attempts: int
    last_error: str | None
    expires_at: int | None = None
    """Epoch seconds after which settled work may be deleted; None while pending."""
    at: float


_SECRET_KEY = re.compile(r"pass(word|wd|phrase)|secret|token|private[_-]?key|api[_-]?key")
# A key naming where a secret lives is fine: secret_ref, SecretArn, password_env, key_file.
_REFERENCE_KEY = re.compile(r"[_-](ref|refs|reference|arn|name|id|env|file|path)$")
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


def _names_secret(key: str) -> bool:
    snake = _CAMEL.sub("_", key).lower()
    return bool(_SECRET_KEY.search(snake)) and not _REFERENCE_KEY.search(snake)


def refuse_secrets(value: Any, path: str = "") -> None:
    """Raise ValueError when any key, at any depth, is named like a credential
    (password, secret, token, private_key, api_key: any case, inside a longer name
    too), unless it names a reference to one (``secret_ref``, ``password_env``)."""
    if isinstance(value, Mapping):
        for key, inner in value.items():
            where = f"{path}.{key}" if path else str(key)
            if isinstance(key, str) and _names_secret(key):
                raise ValueError(f"{where}: the state store refuses to keep secrets; keep the "
                                 "credential in the environment or a secrets manager and store "
                                 "only its name")
            refuse_secrets(inner, where)
    elif isinstance(value, list | tuple):
        for i, inner in enumerate(value):
            refuse_secrets(inner, f"{path}[{i}]")
