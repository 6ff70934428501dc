"""One step registry: the ASL's resource names to the pure step functions.

Locally, each ``${XFunction}`` placeholder becomes ``fileferry:XFunction``
and the runner calls the step here; on AWS, SAM puts a Lambda ARN there and
the Lambda handler calls the same function.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any

from pydantic import BaseModel

from fileferry.automation import delivery
from fileferry.workflow import models
from fileferry.workflow.steps import approval, chunked, finish, transfer, validate
from fileferry.workflow.steps.deps import Deps

__all__ = ["LOCAL_PREFIX", "STEPS", "definition_text", "invoke_step", "local_substitutions"]

LOCAL_PREFIX = "fileferry:"
Step = Callable[[Any, Deps], Awaitable[BaseModel | None]]

STEPS: dict[str, tuple[type[BaseModel], Step]] = {
    "ValidateInputFunction": (models.ExecutionInput, validate.validate_input),
    "RequestApprovalFunction": (models.ApprovalIn, approval.request_approval),
    "AuthenticateSSOFunction": (models.SessionIn, finish.authenticate_sso),
    "CreateTicketsFunction": (models.CreateTicketsIn, finish.create_tickets),
    "TransferFunction": (models.TransferTaskIn, transfer.transfer_task),
    "ChunkedTransferFunction": (models.ChunkedTaskIn, chunked.chunked_transfer),
    "VerifyDeliveryFunction": (models.VerifyIn, finish.verify_delivery),
    "PostDeliveryFunction": (models.PostDeliveryIn, delivery.post_delivery),
    "UpdateServiceNowFunction": (models.UpdateTicketsIn, finish.update_servicenow),
    "NotifyUserFunction": (models.NotifyIn, finish.notify_user),
    "CleanupAndLogoutFunction": (models.CleanupIn, finish.cleanup_and_logout),
    "HandleErrorFunction": (models.HandleErrorIn, finish.handle_error),
}


def definition_text() -> str:
    return resources.files("fileferry.workflow").joinpath("transfer.asl.json").read_text(
        encoding="utf-8")


def local_substitutions() -> dict[str, str]:
    return {name: LOCAL_PREFIX + name for name in STEPS}


async def invoke_step(name: str, payload: Any, deps: Deps,
                      steps: dict[str, tuple[type[BaseModel], Step]] | None = None) -> Any:
    """Validate the payload into the step's model, run it, return plain JSON data;
    ``steps`` is another registry of the same shape (``aws.events.EVENT_STEPS``)."""
    model, step = (STEPS if steps is None else steps)[name]
    result = await step(model.model_validate(payload), deps)
    return None if result is None else json.loads(result.model_dump_json())
