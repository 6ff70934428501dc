"""The service on Step Functions (``workflow.engine: stepfunctions``): the seed's
``initiate_transfer`` and ``get_transfer_status``.

A transfer is recorded in the store first (which must be one the Lambda functions
share: ``store.url: dynamodb://...``), then started with ``StartExecution`` under
its transfer id as the execution name, so starting the same transfer twice gives
the same execution (Step Functions' own idempotency for Standard workflows).
``fileferry transfer`` then polls ``DescribeExecution`` every
``workflow.poll_interval`` seconds and reports from the store's progress records,
as it does with the embedded runner. ``history`` reads ``GetExecutionHistory``;
``cancel`` calls ``StopExecution``.

A stopped execution ends ABORTED at once, without its HandleError and
CleanupAfterError states. Its "Step Functions Execution Status Change" event
(ABORTED, and TIMED_OUT or FAILED alike) goes to ``FileFerry-AbortCleanup``
(``aws.events``), which runs the same steps from the event: the hidden
``.fftmp`` temporary files are removed through the destination, both tickets
and the requester are told (through the outbox while ServiceNow is down), the
sessions are closed and the record ends CANCELLED (FAILED for the others) with
the error. It leaves a transfer whose error path already ran alone. A task
invocation in flight when the execution stops is not stopped by Step Functions:
``cancel`` sets the store's ``cancel_requested`` flag before ``StopExecution``, and
the transfer functions watch it (``aws.cancel``), see docs/deploy.md.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any

import boto3

from fileferry.config import Settings, WorkflowSettings
from fileferry.errors import ConfigError, EndpointUnavailable, FileFerryError
from fileferry.models import TransferResult
from fileferry.store import Store, open_store
from fileferry.transfer.engine import TransferRequest
from fileferry.workflow.asl import ExecutionResult
from fileferry.workflow.models import ExecutionInput

__all__ = ["StepFunctions", "as_result", "cancel_on_aws", "get_transfer_status",
           "history_events", "history_on_aws", "initiate_transfer", "run_recorded_on_aws",
           "submit_on_aws"]

Sleep = Callable[[float], Awaitable[None]]


def as_result(description: dict[str, Any]) -> ExecutionResult | None:
    """``DescribeExecution`` as the runner's result; None while it runs.

    TIMED_OUT is a failure with ``States.Timeout``; PENDING_REDRIVE (a failed
    execution that may be redriven) is a failure too.
    """
    status = description["status"]
    if status == "RUNNING":
        return None
    if status == "SUCCEEDED":
        return ExecutionResult("SUCCEEDED", json.loads(description.get("output") or "null"),
                               None, None)
    if status == "ABORTED":
        return ExecutionResult("ABORTED", None, None, None)
    error = "States.Timeout" if status == "TIMED_OUT" else description.get("error")
    return ExecutionResult("FAILED", None, error or "States.Runtime",
                           description.get("cause") or "")


def _when(value: Any) -> float:
    return value.timestamp() if isinstance(value, datetime) else float(value or 0)


def history_events(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``GetExecutionHistory`` events in the shape of the runner's history."""
    out: list[dict[str, Any]] = []
    state = ""
    for event in events:
        kind, at = str(event["type"]), _when(event.get("timestamp"))
        found = [v for k, v in event.items() if k.endswith("EventDetails")]
        details: dict[str, Any] = found[0] if found and isinstance(found[0], dict) else {}
        if kind.endswith("StateEntered") or kind.endswith("StateExited"):
            state = str(details.get("name", ""))
            verb = "entered" if kind.endswith("Entered") else "exited"
            out.append({"event": verb, "path": state, "state": state, "at": at})
        elif kind.endswith("Failed") or kind.endswith("TimedOut"):
            out.append({"event": "failed", "path": state, "state": state, "at": at,
                        "error": details.get("error", kind), "cause": details.get("cause", "")})
        elif kind in ("ExecutionStarted", "ExecutionSucceeded", "ExecutionAborted"):
            out.append({"event": kind.removeprefix("Execution").lower(), "path": "",
                        "state": "", "at": at})
    return out


class StepFunctions:
    """The deployed state machine, over boto3 (calls run on worker threads)."""

    def __init__(self, settings: WorkflowSettings, client: Any = None) -> None:
        if settings.state_machine_arn is None:
            raise ConfigError("workflow.state_machine_arn is not set; copy the SAM stack's "
                              "StateMachineArn output into the configuration")
        self.arn = settings.state_machine_arn
        region = self.arn.split(":")[3]
        self._client = client or boto3.client("stepfunctions", region_name=region,
                                              endpoint_url=settings.endpoint_url)

    def execution_arn(self, transfer_id: str) -> str:
        return self.arn.replace(":stateMachine:", ":execution:", 1) + ":" + transfer_id

    async def _call(self, method: str, **kwargs: Any) -> Any:
        try:
            return await asyncio.to_thread(getattr(self._client, method), **kwargs)
        except self._client.exceptions.ExecutionDoesNotExist:
            raise FileFerryError(f"no execution {kwargs.get('executionArn')} in Step "
                                 "Functions") from None
        except (self._client.exceptions.StateMachineDoesNotExist,
                self._client.exceptions.InvalidArn):
            raise ConfigError(f"state machine {self.arn} does not exist; check "
                              "workflow.state_machine_arn and the region") from None
        except Exception as exc:
            raise EndpointUnavailable(f"Step Functions {method} failed: {exc}") from exc

    async def start(self, payload: ExecutionInput) -> str:
        response = await self._call("start_execution", stateMachineArn=self.arn,
                                    name=payload.transfer_id,
                                    input=payload.model_dump_json())
        return str(response["executionArn"])

    async def describe(self, execution_arn: str) -> dict[str, Any]:
        return dict(await self._call("describe_execution", executionArn=execution_arn))

    async def history(self, execution_arn: str) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        token: str | None = None
        while True:
            page = await self._call("get_execution_history", executionArn=execution_arn,
                                    maxResults=1000, **({"nextToken": token} if token else {}))
            events += page["events"]
            token = page.get("nextToken")
            if not token:
                return events

    async def stop(self, execution_arn: str, cause: str) -> None:
        await self._call("stop_execution", executionArn=execution_arn, error="Cancelled",
                         cause=cause)

    async def decide(self, task_token: str, outcome: dict[str, Any]) -> None:
        """Hand an approver's decision to the execution waiting in AwaitApproval: its
        ``.waitForTaskToken`` task succeeds (approved) or fails with ApprovalRejected."""
        if outcome["decision"] == "approved":
            await self._call("send_task_success", taskToken=task_token, output=json.dumps(
                {"approver": outcome["approver"], "reason": outcome.get("reason")}))
        else:
            cause = f"rejected by {outcome['approver']}" + (
                f": {outcome['reason']}" if outcome.get("reason") else "")
            await self._call("send_task_failure", taskToken=task_token,
                             error="ApprovalRejected", cause=cause[:32768])


async def initiate_transfer(settings: Settings, request: TransferRequest, store: Store,
                            sfn: StepFunctions | None = None, *, groups: Sequence[str] = (),
                            options: dict[str, Any] | None = None) -> str:
    """Record the transfer (unless it is already) and start its execution; returns the
    execution ARN, which the transfer's record then names. ``groups`` are the
    requester's (for the policies in ValidateInput), ``options`` travel with it."""
    from fileferry.services import make_deps
    from fileferry.workflow.steps.validate import ensure_transfer

    sfn = sfn or StepFunctions(settings.workflow)
    payload = ExecutionInput(transfer_id=request.transfer_id, requester=request.requester,
                             groups=list(groups), sources=list(request.sources),
                             destination=request.destination, options=options or {})
    local = settings.model_copy(update={"servicenow": None})  # only the store is used here
    await ensure_transfer(payload, make_deps(local, store),
                          sfn.execution_arn(request.transfer_id))
    arn = await sfn.start(payload)
    await store.update_transfer(request.transfer_id, execution_id=arn)  # also if recorded before
    return arn


async def get_transfer_status(settings: Settings, transfer_id: str,
                              sfn: StepFunctions | None = None) -> dict[str, Any]:
    """The execution's status and current state, with the store's progress records."""
    sfn = sfn or StepFunctions(settings.workflow)
    arn = sfn.execution_arn(transfer_id)
    description = await sfn.describe(arn)
    entered = [e for e in history_events(await sfn.history(arn)) if e["event"] == "entered"]
    store = open_store(settings.store.url)
    try:
        record = await store.get_transfer(transfer_id)
        files = await store.get_files(transfer_id)
    finally:
        await store.close()
    return {"transfer_id": transfer_id, "execution_arn": arn,
            "status": description["status"],
            "state": entered[-1]["state"] if entered else None,
            "error": description.get("error"), "cause": description.get("cause"),
            "files_total": len(files),
            "files_done": sum(f.status == "DELIVERED" for f in files),
            "bytes_total": sum(f.size for f in files),
            "bytes_done": sum(f.size if f.status == "DELIVERED" else f.bytes_confirmed
                              for f in files),
            "tickets": record.tickets if record else None}


async def submit_on_aws(settings: Settings, request: TransferRequest, sleep: Sleep | None = None,
                        sfn: StepFunctions | None = None, *, groups: Sequence[str] = (),
                        options: dict[str, Any] | None = None) -> TransferResult:
    """``fileferry transfer`` on Step Functions: start, wait for the end, report."""
    from fileferry.services import transfer_result

    sfn = sfn or StepFunctions(settings.workflow)
    pause = sleep or asyncio.sleep
    store = open_store(settings.store.url)
    try:
        arn = await initiate_transfer(settings, request, store, sfn, groups=groups,
                                      options=options)
        while (result := as_result(await sfn.describe(arn))) is None:
            await pause(settings.workflow.poll_interval)
        if result.status == "ABORTED":
            await store.update_transfer(request.transfer_id, status="CANCELLED")
        return await transfer_result(store, request.transfer_id, result)
    finally:
        await store.close()


async def run_recorded_on_aws(settings: Settings, transfer_id: str,
                              sleep: Sleep | None = None) -> TransferResult:
    """``services.run_recorded`` (the API's workers) on Step Functions: start and wait."""
    store = open_store(settings.store.url)
    try:
        record = await store.get_transfer(transfer_id)
    finally:
        await store.close()
    if record is None:
        raise FileFerryError(f"no transfer {transfer_id} in {settings.store.url}")
    return await submit_on_aws(settings, TransferRequest(
        sources=record.sources, destination=record.destination, requester=record.requester,
        transfer_id=transfer_id), sleep)


async def history_on_aws(settings: Settings, transfer_id: str) -> list[dict[str, Any]]:
    sfn = StepFunctions(settings.workflow)
    return history_events(await sfn.history(sfn.execution_arn(transfer_id)))


async def cancel_on_aws(settings: Settings, transfer_id: str) -> bool:
    """Stop the execution if it runs; False when it had already ended.

    The store's ``cancel_requested`` flag is set first, so that a TransferFTP or
    ChunkedTransfer call in flight (which ``StopExecution`` does not stop) sees it and
    stops too (``aws.cancel``); then the execution is stopped. The cleanup follows
    from the ABORTED event (``FileFerry-AbortCleanup``), not from here. A transfer
    missing from the store (an execution started by hand) is still stopped."""
    from fileferry.services import mark_cancel_requested

    sfn = StepFunctions(settings.workflow)
    arn = sfn.execution_arn(transfer_id)
    if (await sfn.describe(arn))["status"] != "RUNNING":
        return False
    store = open_store(settings.store.url)
    try:
        await mark_cancel_requested(store, transfer_id)
    finally:
        await store.close()
    await sfn.stop(arn, "cancelled with fileferry cancel")
    return True
