"""What the API takes and gives: ``TransferCreate`` in, ``TransferPublic`` and
``TransfersPublic`` out, ``ErrorBody`` on every refusal.

Pure pydantic (no FastAPI), so the CLI's ``list``/``status`` print the very
same objects from the local store. ``TransferPublic`` carries every field of
the CLI's ``transfer --json`` object (``transfer_id``, ``execution_id``,
``status``, ``files``, ``error``, ``tickets``) and adds what a live view needs;
``status`` here can also be ``PENDING`` or ``RUNNING``, a file's ``RUNNING``.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from fileferry.models import VerifiedBy
from fileferry.store.models import FileRecordStatus, TransferRecordStatus

__all__ = ["DestinationPublic", "DestinationsPublic", "ErrorBody", "ErrorDetail",
           "FilePublic", "TransferCreate", "TransferEvent", "TransferOptions",
           "TransferPublic", "TransfersPublic"]

# Ids the CLI makes are tr-<16 hex>; other writers may use any of these characters.
TRANSFER_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"
REQUESTER_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,99}$"


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TransferOptions(_In):
    """Optional settings of one transfer; unknown keys are refused (422)."""

    requester: str | None = Field(default=None, pattern=REQUESTER_PATTERN,
                                  description="on whose behalf (honoured for token callers "
                                  "until SSO names the caller)")


class TransferCreate(_In):
    """``POST /api/transfers``: what ``fileferry transfer SOURCE... DESTINATION`` takes."""

    sources: list[str] = Field(min_length=1, max_length=1000,
                               description="s3://bucket/key or s3://bucket/prefix/")
    destination: str = Field(min_length=2, max_length=1024, pattern=r"^[^:/]+:",
                             description="NAME:PATH, NAME from the configuration")
    options: TransferOptions = Field(default_factory=TransferOptions)


class FilePublic(BaseModel):
    source: str
    destination: str
    size: int
    sha256: str | None = None
    md5: str | None = None
    verified_by: VerifiedBy | None = None
    status: FileRecordStatus
    error: dict[str, Any] | None = None
    bytes_confirmed: int = 0
    retries: int = 0
    resume_offset: int = 0


class TransferPublic(BaseModel):
    transfer_id: str
    execution_id: str | None = None
    status: TransferRecordStatus
    files: list[FilePublic] = Field(default_factory=list)
    error: dict[str, Any] | None = None
    tickets: dict[str, str] | None = None
    ticket_links: dict[str, str] | None = None
    requester: str
    sources: list[str]
    destination: str
    created_at: float
    updated_at: float
    bytes_total: int
    bytes_done: int
    files_total: int
    files_done: int
    cancel_requested: bool = False
    history: list[dict[str, Any]] | None = Field(
        default=None, description="the workflow's events (detail view only)")


class TransfersPublic(BaseModel):
    """One page, ordered by transfer id; follow ``next_cursor`` until it is null (a page
    filtered by destination name may hold fewer than ``limit`` items)."""

    data: list[TransferPublic]
    count: int
    next_cursor: str | None = None


class DestinationPublic(BaseModel):
    name: str
    scheme: str
    host: str
    root: str


class DestinationsPublic(BaseModel):
    data: list[DestinationPublic]


class TransferEvent(BaseModel):
    """One server-sent event: ``progress`` (moving), ``file`` (one file finished) or
    ``status`` (the transfer's status changed; ``final`` when it will not change again)."""

    type: Literal["progress", "file", "status"]
    transfer: TransferPublic
    file: FilePublic | None = None
    final: bool = False


class ErrorDetail(BaseModel):
    type: str
    message: str
    fields: list[dict[str, str]] | None = None


class ErrorBody(BaseModel):
    error: ErrorDetail
