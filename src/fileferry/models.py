"""Typed models shared by the engine, the CLI and (later) the workflow and API."""

from __future__ import annotations

import uuid
from typing import Literal

from pydantic import BaseModel, ConfigDict

from fileferry.errors import FileFerryError

__all__ = ["FilePlan", "FileResult", "FileStatus", "TransferResult", "TransferStatus",
           "VerifiedBy", "new_transfer_id"]

VerifiedBy = Literal["server-sha256", "server-md5", "readback-sha256", "size", "none"]
TransferStatus = Literal["SUCCEEDED", "FAILED", "REFUSED", "CANCELLED", "PENDING_APPROVAL"]
FileStatus = Literal["DELIVERED", "FAILED", "CANCELLED", "PLANNED"]


def new_transfer_id() -> str:
    return "tr-" + uuid.uuid4().hex[:16]


class FilePlan(BaseModel):
    """One object to move: where it comes from, where it lands, what S3 says of it."""

    model_config = ConfigDict(frozen=True)

    source: str
    bucket: str
    key: str
    size: int
    destination: str
    source_md5: str | None = None
    source_sha256: str | None = None


class FileResult(BaseModel):
    source: str
    destination: str
    size: int
    sha256: str | None = None
    md5: str | None = None
    verified_by: VerifiedBy | None = None
    status: FileStatus = "PLANNED"
    error: dict[str, str] | None = None


class TransferResult(BaseModel):
    transfer_id: str
    execution_id: str | None = None
    status: TransferStatus
    files: list[FileResult]
    error: dict[str, str] | None = None
    tickets: dict[str, str] | None = None
    # True while ticket work waits in the outbox (ServiceNow unavailable): the tickets
    # read "pending" until created, and an update may still be owed to created ones.
    tickets_pending: bool = False

    @classmethod
    def refused(cls, transfer_id: str, error: FileFerryError) -> TransferResult:
        return cls(transfer_id=transfer_id, status="REFUSED", files=[], error=error.to_dict())

    def to_json(self) -> str:
        return self.model_dump_json()
