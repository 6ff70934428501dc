"""FileFerry-RunRoute against moto's S3, DynamoDB and Step Functions over HTTP.

The handler is called as Lambda would call it, with the events EventBridge
Scheduler and S3's EventBridge notifications send (tests/events/run_route_*.json);
what it started is read back with ListExecutions / DescribeExecution. moto runs
no Lambda code, so an execution stays RUNNING until a test stops it.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest

from fileferry.aws.handlers import TRIGGERS
from fileferry.aws.routes import handle_event, load_route_settings
from fileferry.errors import UsageError
from fileferry.sandbox.s3 import MotoServer
from fileferry.store import open_store
from fileferry.store.ledger import Ledger, LedgerEntry
from fileferry.workflow.models import ExecutionInput
from tests.aws.conftest import EVENTS, SAMPLE_BUCKET, FakeContext, LambdaEnv
from tests.aws.template import ACCOUNT, deployed_definition
from tests.helpers import seed

TICK = "2026-11-28T01:00:00Z"  # 02:00 in Berlin


@pytest.fixture(scope="module")
def sfn(moto: MotoServer) -> Any:
    return boto3.client("stepfunctions", endpoint_url=moto.endpoint_url, region_name="us-east-1")


@pytest.fixture
def machine_arn(sfn: Any) -> str:
    """A state machine of its own per test: its executions are this test's."""
    created = sfn.create_state_machine(name="FileFerry-Transfer-" + secrets.token_hex(3),
                                       definition=deployed_definition(),
                                       roleArn=f"arn:aws:iam::{ACCOUNT}:role/FileFerry-sfn")
    return str(created["stateMachineArn"])


def config(moto: MotoServer, machine_arn: str, routes: dict[str, Any]) -> dict[str, Any]:
    prefix = "FF" + secrets.token_hex(4)
    return {
        "s3": {"endpoint_url": moto.endpoint_url, "region": "us-east-1"},
        # RunRoute never fetches a destination's secret: this one does not exist
        "destinations": {"partner": {
            "url": "sftp://ferry@192.0.2.10/inbound/", "on_conflict": "rename",
            "password": "${aws-secret:fileferry/destinations/missing#password}"}},
        "store": {"url": f"dynamodb://?region=us-east-1&table_prefix={prefix}"
                         f"&endpoint_url={moto.endpoint_url}"},
        "workflow": {"engine": "stepfunctions", "state_machine_arn": machine_arn,
                     "endpoint_url": moto.endpoint_url},
        "routes": routes}


def route(bucket: str, prefix: str = "out/", **triggers: Any) -> dict[str, Any]:
    return {"source": {"bucket": bucket, "prefix": prefix, "include": ["*.csv"]},
            "destination": "partner:inbound/", "triggers": triggers}


def berlin(cron: str) -> dict[str, Any]:
    return {"schedule": {"cron": cron, "timezone": "Europe/Berlin"}}


def load(name: str, bucket: str, **changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((EVENTS / f"{name}.json").read_text(encoding="utf-8")
                                      .replace(SAMPLE_BUCKET, bucket))
    data.update(changes)
    return data


def object_created(bucket: str, key: str) -> dict[str, Any]:
    event = load("run_route_object_created", bucket)
    event["detail"]["object"]["key"] = key
    return event


async def invoke(event: Any) -> dict[str, Any]:
    """As Lambda does: synchronously, on a thread of its own."""
    result: dict[str, Any] = await asyncio.to_thread(
        TRIGGERS["RunRouteFunction"], event, FakeContext(function_name="FileFerry-RunRoute"))
    return result


def started(sfn: Any, machine_arn: str) -> dict[str, ExecutionInput]:
    """Execution name -> its input, read back with DescribeExecution."""
    out = {}
    for item in sfn.list_executions(stateMachineArn=machine_arn)["executions"]:
        described = sfn.describe_execution(executionArn=item["executionArn"])
        out[described["name"]] = ExecutionInput.model_validate_json(described["input"])
    return out


async def ledger(settings_url: str, name: str) -> list[LedgerEntry]:
    store = open_store(settings_url)
    try:
        return await Ledger(store).entries(name)
    finally:
        await store.close()


async def test_a_tick_starts_the_due_routes_once(lambda_env: LambdaEnv, moto: MotoServer,
                                                s3: Any, bucket: str, sfn: Any,
                                                machine_arn: str) -> None:
    seed(s3, bucket, {"out/a.csv": b"a,1\n", "out/b.csv": b"b,2\n", "out/c.txt": b"no"})
    cfg = config(moto, machine_arn, {"nightly": route(bucket, **berlin("0 2 * * *")),
                                     "morning": route(bucket, **berlin("0 5 * * *"))})
    lambda_env(cfg)
    result = await invoke(load("run_route_tick", bucket))
    [run] = result["runs"]
    assert (run["route"], run["status"], run["trigger"]) == ("nightly", "STARTED", "schedule")
    executions = started(sfn, machine_arn)
    assert list(executions) == [run["transfer_id"]]
    sent = executions[run["transfer_id"]]
    assert sent.sources == [f"s3://{bucket}/out/"] and sent.destination == "partner:inbound/"
    assert sent.options == {"route": "nightly"} and sent.requester == "route:nightly"
    assert run["execution_arn"].endswith(":" + run["transfer_id"])
    claims = await ledger(cfg["store"]["url"], "nightly")
    assert [(e.key, e.state, e.transfer_id) for e in claims] == [
        ("out/a.csv", "claimed", run["transfer_id"]), ("out/b.csv", "claimed", run["transfer_id"])]

    again = await invoke(load("run_route_tick", bucket))  # the same tick delivered twice
    assert again["runs"] == []
    a_minute_later = await invoke(load("run_route_tick", bucket,
                                       scheduled_time="2026-11-28T01:01:00Z"))
    assert a_minute_later["runs"] == []
    assert len(started(sfn, machine_arn)) == 1


async def test_object_created_starts_the_matching_route_once(
        lambda_env: LambdaEnv, moto: MotoServer, s3: Any, bucket: str, sfn: Any,
        machine_arn: str) -> None:
    seed(s3, bucket, {"out/daily/report.csv": b"x,y\n", "out/daily/report.tmp": b"partial"})
    cfg = config(moto, machine_arn, {"daily": route(bucket, "out/daily/", s3_events=True),
                                     "other": route(bucket, "elsewhere/", s3_events=True),
                                     "timed": route(bucket, "out/", **berlin("0 2 * * *"))})
    lambda_env(cfg)
    event = load("run_route_object_created", bucket)
    [run] = (await invoke(event))["runs"]
    assert (run["route"], run["status"], run["trigger"]) == ("daily", "STARTED", "s3_event")
    first = run["transfer_id"]
    assert started(sfn, machine_arn)[first].sources == [f"s3://{bucket}/out/daily/"]

    [twice] = (await invoke(event))["runs"]  # EventBridge delivers at least once
    assert twice["status"] == "NOTHING_NEW" and twice["skipped"]["already_sent"] == 1
    assert list(started(sfn, machine_arn)) == [first]
    for key in ("out/daily/report.tmp", "elsewhere/x.tmp", "out/daily/"):
        assert (await invoke(object_created(bucket, key)))["runs"] == []
    other_bucket = object_created("not-a-source-bucket", "out/daily/report.csv")
    assert (await invoke(other_bucket))["runs"] == []
    assert list(started(sfn, machine_arn)) == [first]

    # the execution ends without delivering (stopped): the next run sends the object again
    sfn.stop_execution(executionArn=run["execution_arn"], error="Cancelled", cause="test")
    [retry] = (await invoke(event))["runs"]
    assert retry["status"] == "STARTED" and retry["transfer_id"] != first
    assert set(started(sfn, machine_arn)) == {first, retry["transfer_id"]}
    store = open_store(cfg["store"]["url"])
    try:
        record = await store.get_transfer(first)
        assert record is not None and record.status == "CANCELLED"
        states = {(e.transfer_id, e.state) for e in await Ledger(store).entries("daily")}
    finally:
        await store.close()
    assert states == {(retry["transfer_id"], "claimed")}


async def test_a_too_new_object_runs_on_the_tick_after_min_age(
        lambda_env: LambdaEnv, moto: MotoServer, s3: Any, bucket: str, sfn: Any,
        machine_arn: str) -> None:
    seed(s3, bucket, {"in/new.csv": b"fresh\n"})
    spec = route(bucket, "in/", s3_events=True)
    spec["source"]["min_age"] = "10m"
    lambda_env(config(moto, machine_arn, {"settled": spec}))
    settings = load_route_settings()
    now = time.time()
    [early] = (await handle_event(settings, object_created(bucket, "in/new.csv"),
                                  clock=lambda: now))["runs"]
    assert early["status"] == "NOTHING_NEW" and early["skipped"]["too_new"] == 1
    assert started(sfn, machine_arn) == {}
    later = now + 11 * 60
    tick = {"tick": True, "scheduled_time": datetime.fromtimestamp(later, UTC).isoformat()}
    [run] = (await handle_event(settings, tick, clock=lambda: later))["runs"]
    assert (run["status"], run["trigger"]) == ("STARTED", "min_age")
    assert list(started(sfn, machine_arn)) == [run["transfer_id"]]
    assert (await handle_event(settings, tick, clock=lambda: later))["runs"] == []


async def test_a_route_named_in_the_event_runs_now_and_bad_events_are_refused(
        lambda_env: LambdaEnv, moto: MotoServer, s3: Any, bucket: str, sfn: Any,
        machine_arn: str, tmp_path: Path) -> None:
    seed(s3, bucket, {"out/m.csv": b"m\n"})
    lambda_env(config(moto, machine_arn, {"manual": route(bucket)}))
    [run] = (await invoke({"route": "manual"}))["runs"]
    assert (run["status"], run["trigger"]) == ("STARTED", "manual")
    assert list(started(sfn, machine_arn)) == [run["transfer_id"]]
    with pytest.raises(UsageError, match="unknown route 'nope'"):
        await invoke({"route": "nope"})
    for bad in ({"hello": 1}, ["tick"], {"tick": True, "scheduled_time": "soon"}):
        with pytest.raises(UsageError, match="FileFerry-RunRoute"):
            await invoke(bad)
