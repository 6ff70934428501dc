"""Typed inputs and outputs of the workflow's steps.

Workflow state carries ids and references only: transfer and session ids,
the destination's name (a reference to its settings and secret), byte
counts. File lists live in the store, so the state stays far below Step
Functions' 256 KiB payload limit whatever the number of files.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["CleanupIn", "CreateTicketsIn", "ExecutionInput", "HandleErrorIn", "Handled",
           "NotifyIn", "Plan", "PostDeliveryIn", "PostDeliveryOut", "SessionIn", "SessionOut",
           "TaskRef", "TaskResult", "Tickets", "TransferTaskIn", "UpdateTicketsIn", "VerifyIn",
           "VerifyOut"]


class _In(BaseModel):
    model_config = ConfigDict(extra="ignore")


class ExecutionInput(_In):
    transfer_id: str
    requester: str
    sources: list[str]
    destination: str
    options: dict[str, Any] = Field(default_factory=dict)


class TaskRef(BaseModel):
    """One Map iteration: a batch of small files, one file, or one large file."""

    kind: Literal["batch", "file", "chunked"]
    index: int
    files: int
    bytes: int


class Plan(BaseModel):
    destination_name: str
    root: str
    tasks: list[TaskRef]
    max_parallel: int
    bytes_total: int
    files_total: int


class SessionIn(_In):
    transfer_id: str
    requester: str
    destination: str


class SessionOut(BaseModel):
    session_id: str
    expires_at: float
    secret_ref: str
    """Where the partner's credentials are, never the credentials themselves."""


class CreateTicketsIn(_In):
    transfer_id: str
    requester: str
    destination: str
    sources: list[str]
    bytes_total: int
    files_total: int


class Tickets(BaseModel):
    user: str
    audit: str


class TransferTaskIn(_In):
    transfer_id: str
    destination: str
    session_id: str
    index: int
    task: TaskRef


class TaskResult(BaseModel):
    index: int
    files: int
    bytes: int


class VerifyIn(_In):
    transfer_id: str
    destination: str
    results: list[TaskResult]


class VerifyOut(BaseModel):
    files: int
    bytes: int


class UpdateTicketsIn(_In):
    transfer_id: str
    tickets: Tickets
    delivery: VerifyOut | None = None
    outcome: Literal["SUCCEEDED", "FAILED"]


class NotifyIn(_In):
    transfer_id: str
    requester: str
    outcome: Literal["SUCCEEDED", "FAILED"]
    delivery: VerifyOut | None = None
    tickets: Tickets | None = None


class CleanupIn(_In):
    transfer_id: str
    state: dict[str, Any]
    outcome: Literal["SUCCEEDED", "FAILED"]


class HandleErrorIn(_In):
    transfer_id: str
    state: dict[str, Any]


class Handled(BaseModel):
    error: str
    cause: str


class PostDeliveryIn(_In):
    transfer_id: str
    destination: str
    delivery: VerifyOut | None = None


class PostDeliveryOut(BaseModel):
    """What a route's batch got after verification (all empty for other transfers)."""

    route: str | None = None
    files: int = 0
    trigger_file: str | None = None
    actions_failed: int = 0
