"""``fileferry cancel`` on AWS stops a TransferFTP call in flight, not only the execution.

The handler runs as Lambda runs it (its own thread) against moto's DynamoDB and S3 and
the real sshd, throttled so the copy takes seconds; ``request_cancel`` (engine
stepfunctions) sets the store's flag and stops the execution in moto's Step Functions.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from pathlib import Path
from typing import Any

import boto3
import pytest

from fileferry.config import parse_settings
from fileferry.errors import Cancelled
from fileferry.models import new_transfer_id
from fileferry.services import request_cancel
from fileferry.store import open_store
from tests.aws.conftest import LambdaEnv, event
from tests.aws.template import ACCOUNT, deployed_definition
from tests.aws.test_handlers import call, lambda_config, start
from tests.conftest import sftp_destination
from tests.servers.sshd import SshdServer
from tests.transfer.test_engine_sftp import seed

BIG = secrets.token_bytes(1024 * 1024)  # at 128 KiB/s: about 8 s, cancelled after ~1


def _machine(moto: Any) -> tuple[Any, str]:
    sfn = boto3.client("stepfunctions", endpoint_url=moto.endpoint_url, region_name="us-east-1")
    created = sfn.create_state_machine(
        name="FileFerry-Cancel-" + secrets.token_hex(3), definition=deployed_definition(),
        roleArn=f"arn:aws:iam::{ACCOUNT}:role/FileFerry-sfn", type="STANDARD")
    return sfn, str(created["stateMachineArn"])


async def _planned_task(config: dict[str, Any], tid: str, bucket: str) -> dict[str, Any]:
    """ValidateInput and AuthSSO as the state machine runs them: the first task's event."""
    first = event("validate_input", tid, bucket)
    await start(config, first)
    plan = await call("ValidateInputFunction", first)
    session = await call("AuthenticateSSOFunction", event("authenticate_sso", tid))
    return event("transfer", tid, session_id=session["session_id"], task=plan["tasks"][0])


async def _until_temp_file(root: Path, running: asyncio.Task[Any]) -> None:
    for _ in range(200):
        if list(root.glob(".*fftmp")) or running.done():
            return
        await asyncio.sleep(0.05)


async def test_a_cancel_stops_the_running_transfer_call(
        lambda_env: LambdaEnv, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
        sshd: SshdServer, remote_dir: Path, s3: Any, bucket: str, moto: Any) -> None:
    seed(s3, bucket, {"2026-11/big.bin": BIG})
    sfn, machine_arn = _machine(moto)
    config = lambda_config(moto.endpoint_url, tmp_path, {"partner": sftp_destination(
        sshd, remote_dir, bandwidth_limit="128KiB")},
        transfer={"default_chunk_size": 64 * 1024},  # throttled write by write
        workflow={"engine": "stepfunctions", "state_machine_arn": machine_arn,
                  "endpoint_url": moto.endpoint_url})
    lambda_env(config)
    monkeypatch.setenv("FILEFERRY_CANCEL_POLL", "0.2")
    tid = new_transfer_id()
    task = await _planned_task(config, tid, bucket)
    arn = str(sfn.start_execution(stateMachineArn=machine_arn, name=tid,
                                  input="{}")["executionArn"])
    running = asyncio.create_task(call("TransferFunction", task))
    await _until_temp_file(remote_dir / "daily", running)
    assert not running.done(), "the throttled copy ended before it could be cancelled"

    settings = parse_settings(config)
    asked = time.monotonic()
    assert await request_cancel(settings, tid) is True
    with pytest.raises(Cancelled, match="while this step ran"):
        await asyncio.wait_for(running, 20)
    assert time.monotonic() - asked < 5  # not the ~7 s the copy still had to go
    assert sfn.describe_execution(executionArn=arn)["status"] == "ABORTED"
    await asyncio.sleep(0.5)  # nothing keeps writing after the call returned
    assert not (remote_dir / "daily" / "big.bin").exists()
    assert not list((remote_dir / "daily").glob(".*fftmp"))
    async with open_store(settings.store.url) as store:
        record = await store.get_transfer(tid)
        files = await store.get_files(tid)
    assert record is not None and record.options.get("cancel_requested") is True
    assert all(f.status != "DELIVERED" for f in files)

    # a retry or a late invocation of the same task does not start copying again
    with pytest.raises(Cancelled, match="before this step started"):
        await call("TransferFunction", task)
    assert not list((remote_dir / "daily").iterdir())
