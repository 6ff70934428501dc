"""The functions beside the state machine, called as Lambda calls them, against moto's
server (S3, DynamoDB, Secrets Manager), the real sshd and the ServiceNow emulator:
AbortCleanup (an execution's status-change event) and DeliverPending (a schedule)."""

from __future__ import annotations

import asyncio
import json
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from fileferry.aws.events import ExecutionStatusChange
from fileferry.aws.handlers import EVENT_HANDLERS, EVENT_SPECS
from fileferry.aws.runtime import lambda_handler
from fileferry.config import parse_settings
from fileferry.integrations.outbox import PENDING
from fileferry.models import new_transfer_id
from fileferry.sandbox.servicenow import ServiceNowEmulator
from fileferry.store import open_store
from fileferry.transfer.copy import temp_name
from tests.aws.conftest import EVENTS, FakeContext, LambdaEnv, event
from tests.aws.test_handlers import call, lambda_config, start
from tests.conftest import sftp_destination
from tests.servers.sshd import SshdServer
from tests.transfer.test_engine_sftp import seed

BODY = b"id,amount\n1,100\n2,250\n" * 40


@pytest.fixture
def snow() -> Iterator[ServiceNowEmulator]:
    with ServiceNowEmulator() as emulator:
        emulator.add_group("DataOps")
        yield emulator


def snow_section(snow: ServiceNowEmulator, moto: Any) -> dict[str, Any]:
    """The ServiceNow section as deployed: its password in (moto's) Secrets Manager."""
    name = f"fileferry-{secrets.token_hex(4)}/servicenow"
    boto3.client("secretsmanager", endpoint_url=moto.endpoint_url,
                 region_name="us-east-1").create_secret(
        Name=name, SecretString=json.dumps({"password": snow.password}))
    # Few attempts and no breaker cooldown keep an outage quick to notice and to leave.
    return {"instance_url": snow.url, "username": snow.username,
            "password": "${aws-secret:" + name + "#password}",
            "default_assignment_group": "DataOps", "attempts": 2, "timeout": 5,
            "breaker_threshold": 50, "breaker_cooldown": 0, "flush_timeout": 0}


async def call_event(name: str, payload: dict[str, Any], handler: Any = None) -> Any:
    ctx = FakeContext(function_name=f"FileFerry-{EVENT_SPECS[name].function}")
    return await asyncio.to_thread(handler or EVENT_HANDLERS[name], payload, ctx)


async def started(config: dict[str, Any], tid: str, bucket: str) -> dict[str, Any]:
    """A transfer as far as CreateTickets: planned, logged in, tickets asked for."""
    first = event("validate_input", tid, bucket)
    await start(config, first)
    plan = await call("ValidateInputFunction", first)
    await call("AuthenticateSSOFunction", event("authenticate_sso", tid))
    tickets: dict[str, Any] = await call("CreateTicketsFunction", event(
        "create_tickets", tid, bucket, bytes_total=plan["bytes_total"],
        files_total=plan["files_total"]))
    return tickets


async def stored(config: dict[str, Any], tid: str) -> tuple[Any, list[Any], list[str]]:
    store = open_store(parse_settings(config).store.url)
    try:
        record = await store.get_transfer(tid)
        files = await store.get_files(tid)
        audit = [e.event for e in await store.audit(tid)]
    finally:
        await store.close()
    return record, files, audit


def notes(snow: ServiceNowEmulator, number: str) -> list[str]:
    ticket = next(r for r in snow.records("incident") if r["number"] == number)
    return [j["value"] for j in snow.records("sys_journal_field")
            if j["element_id"] == ticket["sys_id"] and j["element"] == "work_notes"]


def state_of(snow: ServiceNowEmulator, number: str) -> str:
    return next(r["state"] for r in snow.records("incident") if r["number"] == number)


def test_the_sample_event_names_its_transfer_and_status() -> None:
    data = json.loads((EVENTS / "execution-aborted.json").read_text(encoding="utf-8"))
    parsed = ExecutionStatusChange.model_validate(data)
    assert json.loads(data["detail"]["input"])["transfer_id"] == parsed.detail.name
    assert parsed.detail.status == "ABORTED"


async def test_abort_cleanup_removes_temp_files_and_settles_tickets_once(
        lambda_env: LambdaEnv, tmp_path: Path, sshd: SshdServer, remote_dir: Path, s3: Any,
        bucket: str, moto: Any, snow: ServiceNowEmulator,
        monkeypatch: pytest.MonkeyPatch) -> None:
    seed(s3, bucket, {"2026-11/summary.csv": BODY})
    config = lambda_config(moto.endpoint_url, tmp_path,
                           {"partner": sftp_destination(sshd, remote_dir)},
                           servicenow=snow_section(snow, moto))
    lambda_env(config)
    tid = new_transfer_id()
    tickets = await started(config, tid, bucket)
    assert {state_of(snow, n) for n in tickets.values()} == {"1"}  # open
    # the execution was stopped in the middle of TransferFTP: a hidden partial file
    _, files, _ = await stored(config, tid)
    (remote_dir / "daily").mkdir()
    shutil.chown(remote_dir / "daily", sshd.username)
    partial = Path(temp_name(files[0].destination, tid[-8:]))
    assert partial.parent == remote_dir / "daily" and partial.name.startswith(".summary.csv.")
    partial.write_bytes(BODY[:100])

    aborted = event("execution-aborted", tid, bucket)
    result = await call_event("AbortCleanupFunction", aborted)

    assert result["outcome"] == "CANCELLED" and result["transfer_id"] == tid
    assert not partial.exists() and list((remote_dir / "daily").iterdir()) == []
    record, _, audit = await stored(config, tid)
    assert record.status == "CANCELLED"
    assert record.error == {"type": "Cancelled", "message": "cancelled with fileferry cancel"}
    user, audit_ticket = tickets["user"], tickets["audit"]
    assert state_of(snow, user) == "1", "the user ticket stays open for the group"
    assert state_of(snow, audit_ticket) == "6", "the audit ticket is resolved"
    for number in (user, audit_ticket):
        [note] = notes(snow, number)
        assert f"[ff:{tid}:CANCELLED]" in note and "cancelled with fileferry cancel" in note
    assert audit.count("cancelled") == 1 and audit.count("notified") == 1
    assert audit.count("session_opened") == audit.count("session_closed") >= 1

    # EventBridge delivers at least once: the same event again changes nothing
    requests = len(snow.request_log)
    assert await call_event("AbortCleanupFunction", aborted) == result  # replayed
    assert (await stored(config, tid))[2] == audit and len(snow.request_log) == requests
    # ... and without the idempotency record, the step sees the transfer is settled
    monkeypatch.delenv("FILEFERRY_IDEMPOTENCY_TABLE")
    fresh = lambda_handler(EVENT_SPECS["AbortCleanupFunction"])
    again = await call_event("AbortCleanupFunction", aborted, fresh)
    assert again["outcome"] is None and "already CANCELLED" in again["reason"]
    assert (await stored(config, tid))[2] == audit and len(snow.request_log) == requests


async def test_a_failed_execution_whose_error_path_ran_is_left_alone(
        lambda_env: LambdaEnv, tmp_path: Path, moto: Any) -> None:
    partner = {"url": "sftp://ferry@192.0.2.10/inbound/", "password": "not-used-here"}
    config = lambda_config(moto.endpoint_url, tmp_path, {"partner": partner})
    lambda_env(config)
    tid = new_transfer_id()
    first = event("validate_input", tid)
    await start(config, first)
    failed = event("handle_error", tid)
    await call("HandleErrorFunction", failed)
    await call("CleanupAndLogoutFunction", {"transfer_id": tid, "outcome": "FAILED",
                                            "state": failed["state"]})
    before = await stored(config, tid)
    assert before[0].status == "FAILED"

    ended = event("execution-aborted", tid)
    ended["detail"].update(status="FAILED", error="SourceNotFound", cause="no objects")
    result = await call_event("AbortCleanupFunction", ended)
    assert result["outcome"] is None and "already FAILED" in result["reason"]
    after = await stored(config, tid)
    assert after[0].status == "FAILED" and after[2] == before[2]


async def test_an_event_without_a_record_or_with_a_bad_shape_is_told_apart(
        lambda_env: LambdaEnv, tmp_path: Path, moto: Any) -> None:
    config = lambda_config(moto.endpoint_url, tmp_path, {})
    lambda_env(config)
    ghost = event("execution-aborted", new_transfer_id())
    ghost["detail"]["input"] = "not json"  # the name still says which transfer it was
    result = await call_event("AbortCleanupFunction", ghost)
    assert result["outcome"] is None and "no such transfer" in result["reason"]
    assert result["transfer_id"] == ghost["detail"]["name"]
    wrong = event("execution-aborted", new_transfer_id())
    wrong["detail"]["status"] = "SUCCEEDED"
    with pytest.raises(Exception, match=r"FileFerry-AbortCleanup: .*detail\.status"):
        await call_event("AbortCleanupFunction", wrong)


async def test_deliver_pending_delivers_queued_ticket_work_exactly_once(
        lambda_env: LambdaEnv, tmp_path: Path, sshd: SshdServer, remote_dir: Path, s3: Any,
        bucket: str, moto: Any, snow: ServiceNowEmulator) -> None:
    seed(s3, bucket, {"2026-11/summary.csv": BODY})
    config = lambda_config(moto.endpoint_url, tmp_path,
                           {"partner": sftp_destination(sshd, remote_dir)},
                           servicenow=snow_section(snow, moto))
    lambda_env(config)
    tid = new_transfer_id()
    snow.fail_next(10_000, 503)  # ServiceNow is down from the start
    assert await started(config, tid, bucket) == {"user": PENDING, "audit": PENDING}
    # cancelled meanwhile: the update queues behind the create
    settled = await call_event("AbortCleanupFunction", event("execution-aborted", tid, bucket))
    assert settled["outcome"] == "CANCELLED"
    record, _, audit = await stored(config, tid)
    assert record.status == "CANCELLED" and audit.count("work_queued") == 2
    assert snow.records("incident") == []

    scheduled = json.loads((EVENTS / "deliver-pending.json").read_text(encoding="utf-8"))
    still_down = await call_event("DeliverPendingFunction", scheduled)
    assert still_down["delivered"] == 0 and still_down["pending"] >= 2

    snow.clear_faults()  # ServiceNow is back
    drained = await call_event("DeliverPendingFunction", scheduled)
    assert drained == {"delivered": 2, "failed": 0, "pending": 0}
    record, _, audit = await stored(config, tid)
    numbers = {r["number"] for r in snow.records("incident")}
    assert set(record.tickets.values()) == numbers and len(numbers) == 2
    for number in numbers:
        assert len(notes(snow, number)) == 1, "the cancellation reached each ticket once"

    again = await call_event("DeliverPendingFunction", scheduled)  # the next minute
    assert again == {"delivered": 0, "failed": 0, "pending": 0}
    assert len(snow.records("incident")) == 2
    assert all(len(notes(snow, n)) == 1 for n in numbers)
    assert (await stored(config, tid))[2].count("work_delivered") == 2
