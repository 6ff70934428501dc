"""Triggers on one machine: cron schedules, S3 events from SQS, and prefix polling.

``Scheduler.tick()`` runs whatever is due at the injected clock's ``now`` and
returns the runs, so schedules are tested without sleeping; ``serve()`` loops
on it (``fileferry scheduler``, and the API server's lifespan).

* **Schedules.** A route fires at the latest cron time at or before now that
  is after its last fire (missed times while nothing ran coalesce into one
  run; a scheduler starting fresh does not fire for times before it started).
  Each fire time is claimed in the store (``route_fire``), so two schedulers
  sharing a store never both run it.
* **S3 events.** With ``triggers.s3_events.queue_url`` the bucket's
  ObjectCreated notifications are received from SQS; each event whose key the
  route selects starts a run of the route (one run per route per batch of
  messages; the run sends everything new, the ledger dedupes). A message is
  deleted only after a run that did not fail, so a failed or busy run is
  retried when SQS delivers it again. Without a queue, the prefix is polled
  every ``poll_interval`` seconds (a run that finds nothing sends nothing).
* **min_age.** A run that skipped objects for being too new asks for a
  follow-up run when the first of them is old enough (kept in the store's
  route state, so it survives a restart and reaches the next Lambda tick).
* **On AWS** (``fileferry.aws.routes``) a fresh ``Scheduler`` answers each
  one-minute tick with ``since`` set to the tick's window and ``poll`` off:
  the same code decides what is due on one machine and on Lambda.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import unquote_plus

import boto3
from croniter import croniter

from fileferry.automation.objects import S3Object, select
from fileferry.automation.routes import RouteRun, run_route
from fileferry.automation.settings import RouteSettings
from fileferry.config import Settings
from fileferry.store import open_store
from fileferry.store.ledger import Ledger

__all__ = ["Scheduler", "last_fire_before", "next_fire", "routes_for_object"]

log = logging.getLogger(__name__)
Runner = Callable[[str, str], Awaitable[RouteRun]]
QUEUE_WAIT = 10
IDLE_WAKE = 30.0


def last_fire_before(route: RouteSettings, now: float) -> float | None:
    """The latest scheduled time at or before ``now`` (epoch seconds), or None."""
    schedule = route.triggers.schedule
    if schedule is None:
        return None
    moment = datetime.fromtimestamp(now, UTC).astimezone(schedule.zone) + timedelta(seconds=1)
    prev: datetime = croniter(schedule.cron, moment).get_prev(datetime)
    return prev.timestamp()


def next_fire(route: RouteSettings, after: float) -> float | None:
    schedule = route.triggers.schedule
    if schedule is None:
        return None
    return schedule.next_after(datetime.fromtimestamp(after, UTC)).timestamp()


def routes_for_object(settings: Settings, bucket: str, key: str, now: float, *,
                      queue_url: str | None = None) -> list[str]:
    """The routes with S3 events whose source selects ``s3://bucket/key`` (prefix,
    include, exclude; ``min_age`` is the run's business: it asks for a follow-up).
    ``queue_url``: only the routes fed by that SQS queue (None: any route with events)."""
    out = []
    for name, route in sorted(settings.routes.items()):
        events = route.triggers.events
        if events is None or (queue_url is not None and events.queue_url != queue_url) \
                or route.source.bucket != bucket or not key.startswith(route.source.prefix):
            continue
        if select(route, [S3Object(key, 0, "", now - route.source.min_age)], now).eligible:
            out.append(name)
    return out


def _records(body: str) -> list[tuple[str, str]]:
    """(bucket, key) of each ObjectCreated record of an S3 notification (test events and
    other messages give none)."""
    try:
        data = json.loads(body)
    except ValueError:
        return []
    out = []
    for record in data.get("Records", []) if isinstance(data, dict) else []:
        if not str(record.get("eventName", "")).startswith("ObjectCreated"):
            continue
        s3 = record.get("s3", {})
        out.append((s3.get("bucket", {}).get("name", ""),
                    unquote_plus(s3.get("object", {}).get("key", ""))))
    return out


class Scheduler:
    """Runs due routes; ``runner`` (default: ``run_route``) is injectable for tests."""

    def __init__(self, settings: Settings, *, clock: Callable[[], float] = time.time,
                 runner: Runner | None = None, sqs: Any = None, since: float | None = None,
                 poll: bool = True) -> None:
        """``since``: scheduled times from then on are due even without an earlier fire
        (default: now; a Lambda tick passes its window). ``poll``: list the prefixes of
        routes with S3 events and no queue (off on AWS, where EventBridge sends them)."""
        self._settings = settings
        self._clock = clock
        self._runner = runner or self._run
        self._started = clock() if since is None else since
        self._poll = poll
        self._store = open_store(settings.store.url)
        self._ledger = Ledger(self._store)
        self._polls: dict[str, float] = {}
        self._follow_ups: dict[str, float] = {}
        self._sqs = sqs

    async def close(self) -> None:
        await self._store.close()

    async def _run(self, name: str, trigger: str) -> RouteRun:
        return await run_route(self._settings, name, trigger=trigger, clock=self._clock)

    async def _fire(self, name: str, trigger: str) -> RouteRun:
        run = await self._runner(name, trigger)
        route = self._settings.routes[name]
        if run.ready_at is not None and route.source.min_age:
            self._follow_ups[name] = min(run.ready_at, self._follow_ups.get(name, run.ready_at))
            await self._ledger.set_follow_up(name, run.ready_at)
        log.info("route %s (%s): %s %s", name, trigger, run.status, run.transfer_id or "")
        return run

    async def due(self) -> list[tuple[str, str, float]]:
        """(route, trigger, time) of every run due now, schedules first."""
        now = self._clock()
        due = []
        for name, route in sorted(self._settings.routes.items()):
            state = await self._ledger.state(name)
            fire = last_fire_before(route, now)
            if fire is not None:
                last = state.last_fire
                # after a restart, a missed time runs once; a fresh start skips the past
                if fire > last if last is not None else fire >= self._started:
                    due.append((name, "schedule", fire))
            events = route.triggers.events
            if self._poll and events is not None and events.queue_url is None \
                    and self._polls.get(name, self._started) <= now:
                due.append((name, "poll", now))
            if state.follow_up is not None and state.follow_up <= now:
                due.append((name, "min_age", now))
        return due

    async def tick(self) -> list[RouteRun]:
        """Run every due route once (a route due for several reasons runs once)."""
        runs: list[RouteRun] = []
        done: set[str] = set()
        for name, trigger, at in await self.due():
            if trigger == "schedule" and not await self._ledger.claim_fire(name, at):
                continue  # another scheduler took this fire time
            if trigger == "poll":
                events = self._settings.routes[name].triggers.events
                assert events is not None
                self._polls[name] = self._clock() + events.poll_interval
            if trigger == "min_age":
                self._follow_ups.pop(name, None)
                if not await self._ledger.take_follow_up(name, at):
                    continue  # another scheduler took it
            if name not in done:
                done.add(name)
                runs.append(await self._fire(name, trigger))
        return runs

    def next_wake(self) -> float:
        """When something may next be due (a schedule, a poll, a follow-up)."""
        now = self._clock()
        times = [t for name, route in self._settings.routes.items()
                 if (t := next_fire(route, now)) is not None]
        times += list(self._polls.values()) + list(self._follow_ups.values())
        return min(times, default=now + IDLE_WAKE)

    # --- S3 events through SQS

    def _sqs_client(self) -> Any:
        if self._sqs is None:
            s3 = self._settings.s3
            self._sqs = boto3.session.Session().client("sqs", endpoint_url=s3.endpoint_url,
                                                       region_name=s3.region)
        return self._sqs

    def _routes_for(self, queue_url: str, bucket: str, key: str) -> list[str]:
        return routes_for_object(self._settings, bucket, key, self._clock(),
                                 queue_url=queue_url)

    async def poll_queue(self, queue_url: str, wait: int = QUEUE_WAIT) -> list[RouteRun]:
        """Receive one batch of notifications, run the routes they concern, delete the
        messages of runs that did not fail."""
        sqs = self._sqs_client()
        got = await asyncio.to_thread(sqs.receive_message, QueueUrl=queue_url,
                                      MaxNumberOfMessages=10, WaitTimeSeconds=wait)
        messages = got.get("Messages", [])
        wanted: dict[str, list[str]] = {}
        for message in messages:
            names = {n for bucket, key in _records(message.get("Body", ""))
                     for n in self._routes_for(queue_url, bucket, key)}
            for name in names or {""}:
                wanted.setdefault(name, []).append(message["ReceiptHandle"])
        runs, keep = [], set()
        for name in sorted(n for n in wanted if n):
            run = await self._fire(name, "s3_event")
            runs.append(run)
            if run.status in ("FAILED", "BUSY", "CANCELLED"):
                keep.update(wanted[name])
        for handle in {h for hs in wanted.values() for h in hs} - keep:
            await asyncio.to_thread(sqs.delete_message, QueueUrl=queue_url,
                                    ReceiptHandle=handle)
        return runs

    def queues(self) -> list[str]:
        return sorted({e.queue_url for r in self._settings.routes.values()
                       if (e := r.triggers.events) is not None and e.queue_url})

    # --- the loop

    async def serve(self, stop: asyncio.Event) -> None:
        """Tick until ``stop`` is set; each SQS queue is long-polled alongside."""
        async def queue_loop(url: str) -> None:
            while not stop.is_set():
                try:
                    await self.poll_queue(url)
                except Exception:
                    log.exception("polling %s failed; trying again", url)
                    await asyncio.sleep(IDLE_WAKE)

        loops = [asyncio.create_task(queue_loop(url)) for url in self.queues()]
        try:
            while not stop.is_set():
                try:
                    await self.tick()
                except Exception:
                    log.exception("a scheduled run failed to start")
                delay = min(max(self.next_wake() - self._clock(), 0.5), IDLE_WAKE)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
        finally:
            for task in loops:
                task.cancel()
            await asyncio.gather(*loops, return_exceptions=True)
