"""workflow.engine: stepfunctions against moto's Step Functions over HTTP.

moto stores the state machine and its executions but runs no Lambda code: an
execution stays RUNNING until stopped, and its history is moto's canned one.
These tests prove the calls FileFerry makes (the template's definition, the
ARNs, the execution's name and input), the status mapping and the waiting; not
that a handler ran on AWS (tests/aws/test_chunk_loop.py runs them through the ASL).
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any

import boto3
import pytest

from fileferry.aws.stepfunctions import as_result, get_transfer_status, history_events
from fileferry.config import Settings, parse_settings
from fileferry.errors import ConfigError
from fileferry.models import new_transfer_id
from fileferry.services import history, request_cancel, submit_transfer
from fileferry.store import FileRecord, open_store
from fileferry.transfer.engine import TransferRequest
from fileferry.workflow.models import ExecutionInput
from tests.aws.template import ACCOUNT, deployed_definition


@pytest.fixture(scope="module")
def sfn(moto: Any) -> Any:
    return boto3.client("stepfunctions", endpoint_url=moto.endpoint_url, region_name="us-east-1")


@pytest.fixture(scope="module")
def machine_arn(sfn: Any) -> str:
    """CreateStateMachine with the definition the SAM stack deploys."""
    name = "FileFerry-Transfer-" + secrets.token_hex(3)
    created = sfn.create_state_machine(name=name, definition=deployed_definition(),
                                       roleArn=f"arn:aws:iam::{ACCOUNT}:role/FileFerry-sfn",
                                       type="STANDARD")
    return str(created["stateMachineArn"])


def aws_settings(moto: Any, tmp_path: Path, machine_arn: str, **workflow: Any) -> Settings:
    return parse_settings({
        "s3": {"endpoint_url": moto.endpoint_url},
        "destinations": {"partner": {"url": "sftp://ferry@192.0.2.10/inbound/",
                                     "password": "unused"}},
        "store": {"url": f"sqlite:///{tmp_path}/shared.db"},
        "workflow": {"engine": "stepfunctions", "state_machine_arn": machine_arn,
                     "endpoint_url": moto.endpoint_url, "poll_interval": 0.01, **workflow}})


def test_the_machine_is_the_templates(sfn: Any, machine_arn: str) -> None:
    described = sfn.describe_state_machine(stateMachineArn=machine_arn)
    definition = json.loads(described["definition"])
    inner = definition["States"]["TransferFiles"]["ItemProcessor"]["States"]
    assert inner["ChunkedTransfer"]["Resource"] == (
        f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:FileFerry-ChunkedTransfer")
    assert inner["CheckChunkDone"]["Choices"][0]["Next"] == "ChunkedTransfer"


async def test_transfer_starts_an_execution_and_waits_for_its_end(
        sfn: Any, machine_arn: str, moto: Any, tmp_path: Path) -> None:
    settings = aws_settings(moto, tmp_path, machine_arn)
    request = TransferRequest(sources=["s3://reports/2026-11/"], destination="partner:daily/",
                              requester="alice", transfer_id=new_transfer_id())
    arn = machine_arn.replace(":stateMachine:", ":execution:") + ":" + request.transfer_id
    polls: list[str] = []

    async def operator_stops_it(seconds: float) -> None:
        polls.append(sfn.describe_execution(executionArn=arn)["status"])
        if len(polls) == 2:  # nothing runs the Lambdas here; end it from outside
            sfn.stop_execution(executionArn=arn, error="Cancelled", cause="test")

    result = await submit_transfer(settings, request, sleep=operator_stops_it)
    assert polls == ["RUNNING", "RUNNING"]
    assert result.status == "CANCELLED" and result.execution_id == arn
    described = sfn.describe_execution(executionArn=arn)
    assert described["name"] == request.transfer_id
    assert described["stateMachineArn"] == machine_arn
    sent = ExecutionInput.model_validate_json(described["input"])
    assert sent.sources == ["s3://reports/2026-11/"] and sent.requester == "alice"
    assert set(json.loads(described["input"])) == {"transfer_id", "requester", "groups", "sources",
                                                   "destination", "options"}
    store = open_store(settings.store.url)
    try:
        record = await store.get_transfer(request.transfer_id)
    finally:
        await store.close()
    assert record is not None and record.execution_id == arn and record.status == "CANCELLED"


async def test_status_joins_the_execution_and_the_stores_progress(
        sfn: Any, machine_arn: str, moto: Any, tmp_path: Path) -> None:
    from fileferry.aws.stepfunctions import StepFunctions, initiate_transfer

    settings = aws_settings(moto, tmp_path, machine_arn)
    tid = new_transfer_id()
    request = TransferRequest(sources=["s3://reports/a.csv"], destination="partner:",
                              requester="bob", transfer_id=tid)
    store = open_store(settings.store.url)
    try:
        arn = await initiate_transfer(settings, request, store)
        again = await StepFunctions(settings.workflow).start(ExecutionInput(
            transfer_id=tid, requester="bob", sources=["s3://reports/a.csv"],
            destination="partner:"))
        assert again == arn  # the same name and input: the same execution
        # what the functions write on AWS as they go
        await store.upsert_file(tid, FileRecord(source="s3://reports/a.csv",
                                                destination="/inbound/a.csv", size=1000,
                                                bytes_confirmed=400, status="RUNNING"))
    finally:
        await store.close()
    status = await get_transfer_status(settings, tid)
    assert status["status"] == "RUNNING" and status["execution_arn"] == arn
    assert (status["bytes_done"], status["bytes_total"]) == (400, 1000)
    assert (status["files_done"], status["files_total"]) == (0, 1)
    assert status["state"]  # moto's canned history names a state; AWS names ours
    events = await history(settings, tid)
    assert events[0]["event"] == "started"
    assert await request_cancel(settings, tid) is True
    assert sfn.describe_execution(executionArn=arn)["status"] == "ABORTED"
    assert await request_cancel(settings, tid) is False


def test_statuses_map_to_the_runners() -> None:
    assert as_result({"status": "RUNNING"}) is None
    done = as_result({"status": "SUCCEEDED", "output": '{"transfer_id": "t"}'})
    assert done is not None and done.status == "SUCCEEDED" and done.output == {"transfer_id": "t"}
    failed = as_result({"status": "FAILED", "error": "HostKeyMismatch", "cause": "pinned"})
    assert failed is not None and (failed.status, failed.error) == ("FAILED", "HostKeyMismatch")
    timed_out = as_result({"status": "TIMED_OUT"})
    assert timed_out is not None and timed_out.error == "States.Timeout"
    aborted = as_result({"status": "ABORTED"})
    assert aborted is not None and aborted.status == "ABORTED"


def test_history_reads_like_the_runners() -> None:
    events = history_events([
        {"type": "ExecutionStarted", "timestamp": 1.0, "executionStartedEventDetails": {}},
        {"type": "TaskStateEntered", "timestamp": 2.0,
         "stateEnteredEventDetails": {"name": "ValidateInput"}},
        {"type": "LambdaFunctionFailed", "timestamp": 3.0,
         "lambdaFunctionFailedEventDetails": {"error": "SourceNotFound", "cause": "empty"}},
        {"type": "ExecutionFailed", "timestamp": 4.0,
         "executionFailedEventDetails": {"error": "SourceNotFound", "cause": "empty"}}])
    assert [(e["event"], e["state"]) for e in events] == [
        ("started", ""), ("entered", "ValidateInput"), ("failed", "ValidateInput"),
        ("failed", "ValidateInput")]
    assert events[2]["error"] == "SourceNotFound"


def test_stepfunctions_needs_a_state_machine_arn() -> None:
    with pytest.raises(ConfigError, match="state_machine_arn"):
        parse_settings({"workflow": {"engine": "stepfunctions"}})
    with pytest.raises(ConfigError, match="arn:aws:states:REGION"):
        parse_settings({"workflow": {"engine": "stepfunctions",
                                     "state_machine_arn": "FileFerry-Transfer"}})


async def test_resume_leaves_aws_executions_to_aws(machine_arn: str, moto: Any,
                                                   tmp_path: Path) -> None:
    from fileferry.aws.stepfunctions import initiate_transfer
    from fileferry.errors import UsageError
    from fileferry.services import resume_transfers

    settings = aws_settings(moto, tmp_path, machine_arn)
    tid = new_transfer_id()
    store = open_store(settings.store.url)
    try:
        await initiate_transfer(settings, TransferRequest(
            sources=["s3://reports/a.csv"], destination="partner:", requester="bob",
            transfer_id=tid), store)
    finally:
        await store.close()
    assert await resume_transfers(settings) == []  # nothing of AWS's is run here
    with pytest.raises(UsageError, match="redrive-execution"):
        await resume_transfers(settings, tid)


async def test_the_api_workers_run_recorded_transfers_on_aws(sfn: Any, machine_arn: str,
                                                             moto: Any, tmp_path: Path) -> None:
    import asyncio

    from fileferry.services import record_transfer, run_recorded

    settings = aws_settings(moto, tmp_path, machine_arn)
    tid = new_transfer_id()
    await record_transfer(settings, TransferRequest(sources=["s3://reports/a.csv"],
                                                    destination="partner:", requester="carol",
                                                    transfer_id=tid))
    running = asyncio.create_task(run_recorded(settings, tid))
    arn = machine_arn.replace(":stateMachine:", ":execution:") + ":" + tid
    for _ in range(200):  # until the worker has started it
        await asyncio.sleep(0.02)
        if any(e["executionArn"] == arn for e in sfn.list_executions(
                stateMachineArn=machine_arn)["executions"]):
            break
    sfn.stop_execution(executionArn=arn, error="Cancelled", cause="test")
    result = await asyncio.wait_for(running, 30)
    assert result.status == "CANCELLED" and result.execution_id == arn


@pytest.mark.parametrize("decision", ["approved", "rejected"])
async def test_a_decision_reaches_the_execution_waiting_for_its_task_token(
        decision: str, machine_arn: str, moto: Any, tmp_path: Path) -> None:
    """AwaitApproval on AWS waits for SendTaskSuccess/Failure with its task token: the
    approver's decision is recorded in the store and sent to Step Functions (moto
    accepts the call; what it sends is read from the request itself)."""
    from fileferry.identity.principal import Principal
    from fileferry.services import approve_transfer, reject_transfer
    from fileferry.store import TransferRecord

    settings = aws_settings(moto, tmp_path, machine_arn)
    tid, token = new_transfer_id(), "AQCEAAAAKgAAAAMAAAAAAAAAA" + secrets.token_hex(16)
    async with open_store(settings.store.url) as store:
        await store.create_transfer(TransferRecord(
            transfer_id=tid, requester="alice", sources=["s3://b/k"],
            destination="partner:", status="PENDING_APPROVAL"))
        await store.record_once("approval_request", tid, {
            "callback_id": token, "requester": "alice", "group": "approvers",
            "policy": "p", "timeout": 3600, "requested_at": 1e12})
    sent: list[tuple[str, dict[str, Any]]] = []
    def record(params: dict[str, Any], model: Any, **_: Any) -> None:
        sent.append((model.name, dict(params)))

    events = boto3._get_default_session().events  # clients made later inherit the hook
    events.register("provide-client-params.sfn", record)
    bob = Principal(user="bob", groups=frozenset({"approvers"}), source="sso")
    decide = approve_transfer if decision == "approved" else reject_transfer
    try:
        recorded = await decide(settings, tid, bob, "looks right")
    finally:
        events.unregister("provide-client-params.sfn", record)
    assert recorded["approver"] == "bob"
    [(operation, params)] = [(n, p) for n, p in sent if n.startswith("SendTask")]
    assert params["taskToken"] == token
    if decision == "approved":
        assert operation == "SendTaskSuccess"
        assert json.loads(params["output"]) == {"approver": "bob", "reason": "looks right"}
    else:
        assert operation == "SendTaskFailure" and params["error"] == "ApprovalRejected"
        assert params["cause"] == "rejected by bob: looks right"
