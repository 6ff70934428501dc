"""Typed inputs and outputs of the workflow's steps.

Workflow state carries ids and references only: transfer and session ids,
the destination's name (a reference to its settings and secret), byte
counts. File lists live in the store, so the state stays far below Step
Functions' 256 KiB payload limit whatever the number of files.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["ApprovalIn", "ChunkCheckpoint", "ChunkOut", "ChunkedTaskIn", "CleanupIn",
           "CreateTicketsIn", "EndedIn", "ExecutionInput", "HandleErrorIn", "Handled",
           "NotifyIn", "Plan", "PostDeliveryIn", "PostDeliveryOut", "SessionIn", "SessionOut",
           "Settled", "TaskRef",
           "TaskResult", "Tickets", "TransferTaskIn", "UpdateTicketsIn", "VerifyIn",
           "VerifyOut"]


class _In(BaseModel):
    model_config = ConfigDict(extra="ignore")


class ExecutionInput(_In):
    transfer_id: str
    requester: str
    groups: list[str] = Field(default_factory=list)
    """The requester's groups (from the SSO token, or the OS user's), for the policies."""
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
    policy: str = ""
    """The rule that allowed the transfer, as tickets show it."""
    approval_group: str | None = None
    """Set when the rule requires approval: the workflow waits in AwaitApproval."""
    approval_timeout: int | None = None


class ApprovalIn(_In):
    transfer_id: str
    requester: str
    group: str
    policy: str
    timeout: int
    callback_id: str
    """The task token the decision is reported for (a handle, not a credential)."""


class SessionIn(_In):
    transfer_id: str
    requester: str
    destination: str


class SessionOut(BaseModel):
    session_id: str
    expires_at: float
    secret_ref: str = ""
    """Where the partner's credentials are, never the credentials themselves."""


class CreateTicketsIn(_In):
    transfer_id: str
    requester: str
    destination: str
    sources: list[str]
    bytes_total: int
    files_total: int
    policy: str = ""


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
    session_id: str | None = None
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
    outcome: Literal["SUCCEEDED", "FAILED", "CANCELLED"]


class HandleErrorIn(_In):
    transfer_id: str
    state: dict[str, Any]
    outcome: Literal["FAILED", "CANCELLED"] = "FAILED"
    """What the tickets and the notice say; CANCELLED only for a stopped execution."""


class Handled(BaseModel):
    error: str
    cause: str


class ChunkCheckpoint(BaseModel):
    """Where a time-boxed ChunkedTransfer stopped: the next invocation continues here.

    ``offset`` bytes are committed under the temporary name at the destination.
    The digests are not carried (hash state cannot be serialised): the next
    invocation re-hashes ``[0, offset)`` from S3, so the final SHA-256/MD5 still
    cover the whole file. ``expected`` holds the checksums S3 reported when the
    copy began, so a source that changed in between is noticed.
    """

    offset: int = Field(ge=0)
    expected: dict[str, str] = Field(default_factory=dict)
    invocations: int = Field(default=1, ge=1)


class ChunkOut(TaskResult):
    """A ChunkedTransfer invocation's result; the ASL loops while ``done`` is false."""

    done: bool = True
    checkpoint: ChunkCheckpoint | None = None


class ChunkedTaskIn(TransferTaskIn):
    chunk: ChunkOut | None = None
    """The previous invocation's result (``$.chunk``), absent on the first."""


class PostDeliveryIn(_In):
    transfer_id: str
    destination: str | None = None
    delivery: VerifyOut | None = None
    after_failure: bool = False
    """``SettleDelivered``: the batch failed; settle the files delivered before it did."""


class PostDeliveryOut(BaseModel):
    """What a route's batch got after verification (all empty for other transfers)."""

    route: str | None = None
    files: int = 0
    trigger_file: str | None = None
    actions_failed: int = 0


class EndedIn(_In):
    """An execution that ended outside its own error path (``steps.ended``)."""

    transfer_id: str
    status: Literal["ABORTED", "TIMED_OUT", "FAILED"]
    """Step Functions' status: stopped (a cancel), over its time limit, or failed."""
    error: str | None = None
    cause: str | None = None


class Settled(BaseModel):
    """What ``settle_ended`` did: ``outcome`` None when the record was already final."""

    transfer_id: str
    outcome: Literal["FAILED", "CANCELLED"] | None
    reason: str
