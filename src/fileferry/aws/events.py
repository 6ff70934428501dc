"""The functions beside the state machine: they answer events about it, not Task states.

* ``FileFerry-AbortCleanup`` (secrets: destinations, servicenow, notifications):
  an EventBridge rule on "Step Functions Execution Status Change" of the transfer
  state machine, status ABORTED, TIMED_OUT or FAILED.
* ``FileFerry-DeliverPending`` (secrets: servicenow, notifications): an EventBridge
  Scheduler schedule, ``rate(1 minute)``.

``EVENT_STEPS`` maps each to ``(event model, step)`` as ``workflow.registry.STEPS``
does for the Task states; ``aws.runtime`` wraps them in the same Powertools
handler. Both are idempotent by themselves (events arrive at least once):
AbortCleanup leaves a transfer already settled alone, and the outbox delivers
each piece of work once (correlation ids, a lease per transfer).

An execution's status-change event carries its input as a JSON string
(``detail.input``); the transfer id is read from it, or, when Step Functions
left the input out (``inputDetails.included`` false, over 256 KiB), from the
execution's name, which is the transfer id by design (``StepFunctions.start``).
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Literal

from aws_lambda_powertools.utilities.parser.models import EventBridgeModel
from pydantic import BaseModel, ConfigDict, Field

from fileferry.workflow.models import EndedIn, Settled
from fileferry.workflow.steps.deps import Deps
from fileferry.workflow.steps.ended import settle_ended

__all__ = ["EVENT_STEPS", "Drained", "ExecutionDetail", "ExecutionStatusChange", "ScheduledRun",
           "abort_cleanup", "deliver_pending", "transfer_id_of"]

log = logging.getLogger(__name__)


class ExecutionDetail(BaseModel):
    """``detail`` of a "Step Functions Execution Status Change" event (the fields used)."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    execution_arn: str = Field(alias="executionArn")
    state_machine_arn: str = Field(alias="stateMachineArn")
    name: str
    status: Literal["ABORTED", "TIMED_OUT", "FAILED"]
    """The rule sends only these; RUNNING and SUCCEEDED need no cleanup."""
    input: str | None = None
    error: str | None = None
    cause: str | None = None


class ExecutionStatusChange(EventBridgeModel):
    detail: ExecutionDetail


class ScheduledRun(BaseModel):
    """The input the template's schedule sends (Scheduler's context attributes)."""

    model_config = ConfigDict(extra="ignore")

    schedule_arn: str | None = None
    scheduled_time: str | None = None
    attempt: int | None = None


class Drained(BaseModel):
    delivered: int
    failed: int
    pending: int


def transfer_id_of(detail: ExecutionDetail) -> str:
    """The transfer the execution ran: its input's ``transfer_id``, else its name."""
    try:
        data: Any = json.loads(detail.input or "null")
    except ValueError:
        data = None
    if isinstance(data, dict) and isinstance(data.get("transfer_id"), str) \
            and data["transfer_id"]:
        return str(data["transfer_id"])
    return detail.name


async def abort_cleanup(event: ExecutionStatusChange, deps: Deps) -> Settled:
    """The workflow's error path for an execution that ended without running it."""
    detail = event.detail
    tid = transfer_id_of(detail)
    log.info("execution %s ended %s: settling transfer %s", detail.execution_arn,
             detail.status, tid, extra={"transfer_id": tid})
    return await settle_ended(EndedIn(transfer_id=tid, status=detail.status,
                                      error=detail.error, cause=detail.cause), deps)


async def deliver_pending(event: ScheduledRun, deps: Deps) -> Drained:
    """What ``fileferry serve`` does every 30 s: drain the ticket/notification outbox."""
    from fileferry.services import drain_outbox  # services imports the CLI's integrations

    report = await drain_outbox(deps)
    if report.pending:
        log.warning("outbox: %d piece(s) of work still pending", report.pending)
    return Drained(**dataclasses.asdict(report))


Step = Callable[[Any, Deps], Awaitable[BaseModel | None]]

EVENT_STEPS: dict[str, tuple[type[BaseModel], Step]] = {
    "AbortCleanupFunction": (ExecutionStatusChange, abort_cleanup),
    "DeliverPendingFunction": (ScheduledRun, deliver_pending),
}
"""Template logical id -> (event model, step)."""
