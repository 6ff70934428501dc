"""Each Lambda handler called as Lambda calls it (event, context), against moto's server
and the real sshd; for the same input its output equals the embedded runner's step."""

from __future__ import annotations

import asyncio
import hashlib
import json
import secrets
from pathlib import Path
from typing import Any

import boto3
import pytest

from fileferry.aws.handlers import HANDLERS, SPECS
from fileferry.aws.runtime import lambda_error
from fileferry.config import parse_settings
from fileferry.endpoints.registry import close_idle_destinations
from fileferry.errors import SourceNotFound, UsageError
from fileferry.models import new_transfer_id
from fileferry.services import make_deps
from fileferry.store import open_store
from fileferry.workflow.models import ExecutionInput
from fileferry.workflow.registry import STEPS, definition_text, invoke_step
from fileferry.workflow.steps.validate import ensure_transfer
from tests.aws.conftest import EVENTS, FakeContext, LambdaEnv, event
from tests.conftest import sftp_destination
from tests.servers.sshd import SshdServer
from tests.transfer.test_engine_sftp import seed, tree

EVENT_FILES = {"ValidateInputFunction": "validate_input",
               "RequestApprovalFunction": "request_approval",
               "AuthenticateSSOFunction": "authenticate_sso",
               "CreateTicketsFunction": "create_tickets", "TransferFunction": "transfer",
               "ChunkedTransferFunction": "chunked_transfer",
               "VerifyDeliveryFunction": "verify_delivery",
               "PostDeliveryFunction": "post_delivery",
               "UpdateServiceNowFunction": "update_servicenow",
               "NotifyUserFunction": "notify_user", "CleanupAndLogoutFunction": "cleanup",
               "HandleErrorFunction": "handle_error"}


def lambda_config(moto_url: str, tmp_path: Path, destinations: dict[str, Any],
                  **sections: Any) -> dict[str, Any]:
    """The deployed form: the store on DynamoDB (moto's), fresh tables for each test."""
    prefix = "FF" + secrets.token_hex(4)
    return {"s3": {"endpoint_url": moto_url, "region": "us-east-1"},
            "destinations": destinations,
            "store": {"url": f"dynamodb://?region=us-east-1&table_prefix={prefix}"
                             f"&endpoint_url={moto_url}"}, **sections}


async def call(name: str, payload: dict[str, Any], **context: Any) -> Any:
    """Invoke a handler the way Lambda does: synchronously, on a thread of its own."""
    ctx = FakeContext(function_name=f"FileFerry-{SPECS[name].function}", **context)
    return await asyncio.to_thread(HANDLERS[name], payload, ctx)


async def step(config: dict[str, Any], name: str, payload: dict[str, Any]) -> Any:
    """The embedded runner's way: the registered step with the local ports."""
    settings = parse_settings(config)
    store = open_store(settings.store.url)
    try:
        return await invoke_step(name, payload, make_deps(settings, store))
    finally:
        await close_idle_destinations()
        await store.close()


async def start(config: dict[str, Any], payload: dict[str, Any]) -> None:
    """What `fileferry transfer` records before it starts an execution."""
    settings = parse_settings(config)
    store = open_store(settings.store.url)
    try:
        await ensure_transfer(ExecutionInput.model_validate(payload),
                              make_deps(settings, store), payload["execution_id"])
    finally:
        await store.close()


def test_every_step_has_a_handler_and_a_sample_event() -> None:
    assert set(HANDLERS) == set(STEPS) == set(SPECS) == set(EVENT_FILES)
    for name, file in EVENT_FILES.items():
        data = json.loads((EVENTS / f"{file}.json").read_text(encoding="utf-8"))
        STEPS[name][0].model_validate(data)  # the event is what the step takes
        assert callable(HANDLERS[name])
    placeholders = definition_text()
    assert all("${" + name + "}" in placeholders for name in HANDLERS)


async def test_handlers_equal_the_runner_steps(lambda_env: LambdaEnv, tmp_path: Path,
                                               sshd: SshdServer, remote_dir: Path, s3: Any,
                                               bucket: str, moto: Any) -> None:
    objects = {"2026-11/summary.csv": b"id,total\n1,42\n" * 50,
               "2026-11/detail.csv": secrets.token_bytes(5000)}
    seed(s3, bucket, objects)
    config = lambda_config(moto.endpoint_url, tmp_path,
                           {"partner": sftp_destination(sshd, remote_dir)})
    lambda_env(config)
    tid = new_transfer_id()
    first = event("validate_input", tid, bucket)
    await start(config, first)

    plan = await call("ValidateInputFunction", first)
    assert plan == await step(config, "ValidateInputFunction", first)
    assert plan["files_total"] == 2 and [t["kind"] for t in plan["tasks"]] == ["batch"]

    auth = event("authenticate_sso", tid)
    session = await call("AuthenticateSSOFunction", auth)
    local = await step(config, "AuthenticateSSOFunction", auth)
    assert session["secret_ref"] == local["secret_ref"] == "config:destinations.partner"
    assert session["session_id"].startswith("ses-")  # a new session each time, by design

    tickets_in = event("create_tickets", tid, bucket, bytes_total=plan["bytes_total"],
                       files_total=plan["files_total"])
    tickets = await call("CreateTicketsFunction", tickets_in)
    assert tickets == await step(config, "CreateTicketsFunction", tickets_in)

    task = event("transfer", tid, session_id=session["session_id"], task=plan["tasks"][0])
    done = await call("TransferFunction", task)
    assert done == {"index": 0, "files": 2, "bytes": sum(map(len, objects.values()))}
    assert tree(remote_dir / "daily") == {k.split("/")[1]: v for k, v in objects.items()}
    assert done == await step(config, "TransferFunction", task)  # delivered files skipped

    verify = event("verify_delivery", tid, results=[done])
    delivery = await call("VerifyDeliveryFunction", verify)
    assert delivery == await step(config, "VerifyDeliveryFunction", verify)
    for name, file in (("UpdateServiceNowFunction", "update_servicenow"),
                       ("NotifyUserFunction", "notify_user")):
        payload = event(file, tid, tickets=tickets, delivery=delivery)
        assert await call(name, payload) is None
        assert await step(config, name, payload) is None
    cleanup = event("cleanup", tid, state={**first, "plan": plan, "session": session})
    assert await call("CleanupAndLogoutFunction", cleanup) is None

    settings = parse_settings(config)
    store = open_store(settings.store.url)
    try:
        files = {f.destination.rsplit("/", 1)[1]: f for f in await store.get_files(tid)}
        audit = [e.event for e in await store.audit(tid)]
        record = await store.get_transfer(tid)
    finally:
        await store.close()
    assert files["detail.csv"].sha256 == hashlib.sha256(objects["2026-11/detail.csv"]).hexdigest()
    assert audit.count("tickets_created") == audit.count("tickets_updated") == 1
    assert audit.count("notified") == 1
    assert record is not None and record.status == "SUCCEEDED"


async def authenticated_once(lambda_env: LambdaEnv, tmp_path: Path,
                             moto: Any) -> tuple[dict[str, Any], Any]:
    """A validated transfer (to a partner never contacted) and its first AuthSSO call:
    the AuthSSO event and what the call returned."""
    partner = {"url": "sftp://ferry@192.0.2.10/inbound/", "password": "not-used-here"}
    config = lambda_config(moto.endpoint_url, tmp_path, {"partner": partner})
    lambda_env(config)
    tid = new_transfer_id()
    await start(config, event("validate_input", tid))
    payload = event("authenticate_sso", tid)
    return payload, await call("AuthenticateSSOFunction", payload)


async def test_a_completed_call_is_replayed_from_dynamodb(lambda_env: LambdaEnv, tmp_path: Path,
                                                          moto: Any,
                                                          idempotency_table: str) -> None:
    payload, first = await authenticated_once(lambda_env, tmp_path, moto)
    again = await call("AuthenticateSSOFunction", payload)
    assert again == first  # the same session, not a second one
    dynamodb = boto3.client("dynamodb", endpoint_url=moto.endpoint_url, region_name="us-east-1")
    items = dynamodb.scan(TableName=idempotency_table)["Items"]
    mine = [i for i in items if i["id"]["S"].startswith("FileFerry-AuthSSO#")
            and first["session_id"] in i.get("data", {}).get("S", "")]
    assert len(mine) == 1 and mine[0]["status"]["S"] == "COMPLETED"


async def test_errors_keep_their_class_name_for_the_asl(lambda_env: LambdaEnv, tmp_path: Path,
                                                         sshd: SshdServer, remote_dir: Path,
                                                         bucket: str, moto: Any,
                                                         capsys: pytest.CaptureFixture[str]
                                                         ) -> None:
    config = lambda_config(moto.endpoint_url, tmp_path,
                           {"partner": sftp_destination(sshd, remote_dir)})
    lambda_env(config)
    tid = new_transfer_id()
    payload = event("validate_input", tid, bucket)  # the bucket is empty
    await start(config, payload)
    with pytest.raises(SourceNotFound) as caught:
        await call("ValidateInputFunction", payload)
    assert lambda_error(caught.value)["errorType"] == "SourceNotFound"
    retry_again = await call_again_after_failure(payload)
    assert retry_again == "SourceNotFound"  # a failed call is not replayed, it runs again
    emf = [json.loads(line) for line in capsys.readouterr().out.splitlines()
           if line.startswith("{") and '"_aws"' in line]
    failures = [m for m in emf if m.get("Failures") == 1.0 or m.get("Failures") == [1.0]]
    assert failures and failures[0]["Error"] == "SourceNotFound"
    assert failures[0]["Step"] == "ValidateInput"

    with pytest.raises(UsageError, match=r"FileFerry-TransferFTP: .*task"):
        await call("TransferFunction", {"transfer_id": tid, "destination": "partner",
                                        "session_id": "s", "index": 0})
    with pytest.raises(UsageError, match="must be a JSON object"):
        await asyncio.to_thread(HANDLERS["TransferFunction"], [], FakeContext())


async def call_again_after_failure(payload: dict[str, Any]) -> str:
    try:
        await call("ValidateInputFunction", payload)
    except Exception as exc:
        return type(exc).__name__
    return "no error"
