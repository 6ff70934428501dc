"""Schedules with an injected clock, S3 events from SQS on moto, and prefix polling."""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import boto3

from fileferry.automation.routes import RouteRun
from fileferry.automation.scheduler import Scheduler, last_fire_before, next_fire
from fileferry.config import Settings
from fileferry.sandbox.s3 import MotoServer
from tests.conftest import sftp_destination
from tests.helpers import seed
from tests.servers.sshd import SshdServer
from tests.transfer.test_engine_sftp import tree

SettingsFor = Callable[..., Settings]
BERLIN = ZoneInfo("Europe/Berlin")
NOWHERE = {"url": "sftp://u@127.0.0.1:1/x/"}


def at(*parts: int) -> float:
    return datetime(*parts, tzinfo=BERLIN).timestamp()  # type: ignore[misc]


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Recorder:
    """Stands in for run_route where only the scheduler's decisions are under test."""

    def __init__(self, clock: Clock) -> None:
        self.calls: list[tuple[str, str, float]] = []
        self._clock = clock

    async def __call__(self, name: str, trigger: str) -> RouteRun:
        self.calls.append((name, trigger, self._clock()))
        return RouteRun(route=name, status="NOTHING_NEW", trigger=trigger, at=self._clock())


def nightly(bucket: str = "bkt", **triggers: Any) -> dict[str, Any]:
    return {"source": {"bucket": bucket, "prefix": "out/"}, "destination": "t:",
            "triggers": {"schedule": {"cron": "0 2 * * *", "timezone": "Europe/Berlin"},
                         **triggers}}


def test_cron_times_follow_the_time_zone_across_dst(settings_for: SettingsFor) -> None:
    route = settings_for({"t": NOWHERE}, routes={"r": nightly()}).routes["r"]
    # 2026-03-29: clocks jump from 02:00 to 03:00 in Berlin; the run happens once, at 03:00
    assert next_fire(route, at(2026, 3, 28, 12, 0)) == at(2026, 3, 29, 3, 0)
    assert next_fire(route, at(2026, 3, 29, 3, 0)) == at(2026, 3, 30, 2, 0)
    assert last_fire_before(route, at(2026, 11, 28, 2, 0)) == at(2026, 11, 28, 2, 0)
    assert last_fire_before(route, at(2026, 11, 28, 1, 59)) == at(2026, 11, 27, 2, 0)


async def test_schedule_fires_once_per_time_and_coalesces_missed_ones(
        settings_for: SettingsFor) -> None:
    settings = settings_for({"t": NOWHERE}, routes={"r": nightly()})
    clock = Clock(at(2026, 11, 28, 1, 0))
    runner = Recorder(clock)
    scheduler = Scheduler(settings, clock=clock, runner=runner)
    try:
        assert await scheduler.tick() == []  # nothing before the first 02:00
        assert scheduler.next_wake() == at(2026, 11, 28, 2, 0)
        clock.now = at(2026, 11, 28, 1, 59, 59)
        assert await scheduler.tick() == []
        clock.now = at(2026, 11, 28, 2, 0, 5)
        assert len(await scheduler.tick()) == 1
        assert await scheduler.tick() == []  # the same time never fires twice
        # a second scheduler on the same store (another process) does not fire it again
        other = Scheduler(settings, clock=clock, runner=runner)
        assert await other.tick() == []
        await other.close()
        clock.now = at(2026, 12, 1, 9, 0)  # down for three nights: one catch-up run
        assert len(await scheduler.tick()) == 1
        assert await scheduler.tick() == []
        assert [c[1] for c in runner.calls] == ["schedule", "schedule"]
    finally:
        await scheduler.close()


async def test_a_fresh_scheduler_does_not_run_past_times(settings_for: SettingsFor) -> None:
    settings = settings_for({"t": NOWHERE}, routes={"r": nightly()})
    clock = Clock(at(2026, 11, 28, 9, 0))
    runner = Recorder(clock)
    scheduler = Scheduler(settings, clock=clock, runner=runner)
    try:
        assert await scheduler.tick() == []
        clock.now = at(2026, 11, 29, 2, 0)
        assert len(await scheduler.tick()) == 1
    finally:
        await scheduler.close()


async def test_a_scheduled_tick_runs_the_real_route(settings_for: SettingsFor, sshd: SshdServer,
                                                    remote_dir: Path, s3: Any,
                                                    bucket: str) -> None:
    seed(s3, bucket, {"out/a.csv": b"1,2\n"})
    route = nightly(bucket)
    route["destination"] = "t:in/"
    settings = settings_for({"t": sftp_destination(sshd, remote_dir)}, routes={"r": route})
    now = datetime.now(BERLIN)
    clock = Clock(now.replace(hour=1, minute=0).timestamp())
    scheduler = Scheduler(settings, clock=clock)
    try:
        assert await scheduler.tick() == []
        assert tree(remote_dir) == {}
        clock.now = now.replace(hour=2, minute=0, second=30).timestamp()
        [run] = await scheduler.tick()
        assert run.status == "SUCCEEDED" and run.trigger == "schedule", run.error
        assert tree(remote_dir) == {"in/a.csv": b"1,2\n"}
    finally:
        await scheduler.close()


async def test_s3_events_from_sqs_start_the_route(settings_for: SettingsFor, sshd: SshdServer,
                                                  remote_dir: Path, s3: Any, bucket: str,
                                                  moto: MotoServer) -> None:
    sqs = boto3.client("sqs", endpoint_url=moto.endpoint_url, region_name="us-east-1")
    queue = sqs.create_queue(QueueName="q-" + secrets.token_hex(4))["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])[
        "Attributes"]["QueueArn"]
    s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration={
        "QueueConfigurations": [{"QueueArn": arn, "Events": ["s3:ObjectCreated:*"]}]})
    route = {"source": {"bucket": bucket, "prefix": "out/", "include": ["*.csv"]},
             "destination": "t:", "triggers": {"s3_events": {"queue_url": queue}}}
    settings = settings_for({"t": sftp_destination(sshd, remote_dir)}, routes={"r": route})
    scheduler = Scheduler(settings, sqs=sqs)
    try:
        seed(s3, bucket, {"other/x.csv": b"not under the prefix", "out/skip.tmp": b"excluded"})
        assert await scheduler.poll_queue(queue, wait=1) == []  # events, but none for r
        seed(s3, bucket, {"out/new file.csv": b"fresh\n"})
        [run] = await scheduler.poll_queue(queue, wait=1)
        assert run.status == "SUCCEEDED" and run.trigger == "s3_event", run.error
        assert tree(remote_dir) == {"new file.csv": b"fresh\n"}
        left = sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=0).get("Messages", [])
        assert left == [], "handled messages are deleted"
        assert await scheduler.poll_queue(queue, wait=0) == []
    finally:
        await scheduler.close()


def test_s3_event_bodies_are_parsed() -> None:
    from fileferry.automation.scheduler import _records

    body = {"Records": [{"eventName": "ObjectCreated:Put",
                         "s3": {"bucket": {"name": "b"}, "object": {"key": "out/a+b%2Bc.csv"}}},
                        {"eventName": "ObjectRemoved:Delete",
                         "s3": {"bucket": {"name": "b"}, "object": {"key": "out/x"}}}]}
    assert _records(json.dumps(body)) == [("b", "out/a b+c.csv")]
    assert _records(json.dumps({"Event": "s3:TestEvent"})) == []
    assert _records("not json") == []


async def test_polling_without_a_queue_and_min_age_follow_up(settings_for: SettingsFor) -> None:
    route = {"source": {"bucket": "bkt", "prefix": "out/", "min_age": "10m"},
             "destination": "t:", "triggers": {"s3_events": {"poll_interval": 60}}}
    settings = settings_for({"t": NOWHERE}, routes={"r": route})
    clock = Clock(1_000_000.0)
    calls: list[str] = []

    async def runner(name: str, trigger: str) -> RouteRun:
        calls.append(trigger)
        ready = clock() + 120 if trigger == "poll" and len(calls) == 1 else None
        return RouteRun(route=name, status="NOTHING_NEW", trigger=trigger, at=clock(),
                        ready_at=ready)

    scheduler = Scheduler(settings, clock=clock, runner=runner)
    try:
        await scheduler.tick()
        assert calls == ["poll"]
        clock.now += 30
        await scheduler.tick()
        assert calls == ["poll"]
        clock.now += 31
        await scheduler.tick()
        assert calls == ["poll", "poll"]
        clock.now += 60  # the first poll's too-new object is old enough now
        await scheduler.tick()
        assert calls == ["poll", "poll", "poll"]  # one run for both reasons
        assert scheduler.next_wake() == clock.now + 60
    finally:
        await scheduler.close()
