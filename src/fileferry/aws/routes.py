"""``FileFerry-RunRoute``: the routes' schedules and S3 events on AWS.

Routes live in the configuration (the SSM parameter), so nothing per route is
deployed; adding or changing a route needs no redeploy. Three events start the
function (``tests/events/run_route_*.json``):

* ``{"tick": true, "scheduled_time": "..."}`` from one EventBridge Scheduler
  schedule at ``rate(1 minute)``. A fresh :class:`~fileferry.automation.scheduler.Scheduler`
  (the one ``fileferry serve`` runs) decides at the scheduled time which routes
  are due: cron and time zone, the last fire time and ``min_age`` follow-ups
  from the store, each fire time claimed once. Times up to ``TICK_WINDOW``
  before the tick count for a route that never fired (a new route does not
  run for its past).
* An S3 ``Object Created`` event from EventBridge: every route with
  ``triggers.s3_events`` whose source selects the object runs.
* ``{"route": "NAME"}``: run that route now, as ``fileferry run NAME`` would.

Each run is ``run_route(wait=False)``: the same selection, ledger claims,
naming and batch as on one machine, then ``StartExecution`` named by the
transfer id; the run does not wait. A later run reconciles the claims of an
ended execution (:func:`execution_ended`).

Delivering the same event twice is safe: the first run's ledger claims make
the objects "already sent" to the second (it starts nothing), and two runs at
once meet the route's lease, where the second gets ``BUSY``. A busy run for an
S3 event raises ``LeaseHeld`` so Lambda retries the event later (the running
run may have listed the prefix before the object arrived); a busy tick does
not (the next tick comes in a minute).
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from fileferry.automation.routes import RouteRun, run_route
from fileferry.automation.scheduler import Scheduler, routes_for_object
from fileferry.aws.stepfunctions import StepFunctions, initiate_transfer
from fileferry.config import Settings, parse_settings
from fileferry.errors import ConfigError, LeaseHeld, UsageError
from fileferry.store import FINAL_STATUSES, Store
from fileferry.store.models import TransferRecord
from fileferry.transfer.engine import TransferRequest

__all__ = ["TICK_WINDOW", "execution_ended", "handle_event", "load_route_settings",
           "run_routes", "start_batch"]

TICK_WINDOW = 120.0
"""Seconds before a tick whose scheduled times a never-fired route still runs."""
Clock = Callable[[], float]


# --- the Step Functions side of a route run (called from automation.routes)

async def start_batch(settings: Settings, store: Store, request: TransferRequest,
                      route: str) -> str:
    """Record the batch's transfer and start its execution; returns the execution ARN."""
    from fileferry.services import _default_principal

    who = _default_principal(settings, request.requester)
    return await initiate_transfer(settings, dataclasses.replace(request, requester=who.user),
                                   store, groups=sorted(who.groups), options={"route": route})


class _Executions(StepFunctions):
    async def find(self, transfer_id: str) -> dict[str, Any] | None:
        """DescribeExecution, or None when no execution has that name."""
        arn = self.execution_arn(transfer_id)
        try:
            return dict(await asyncio.to_thread(self._client.describe_execution,
                                                executionArn=arn))
        except self._client.exceptions.ExecutionDoesNotExist:
            return None


async def execution_ended(settings: Settings, store: Store, route: str, transfer_id: str,
                          record: TransferRecord | None) -> bool:
    """Whether the claims of ``transfer_id`` may be reconciled now.

    Running: False. Never started (a run died between claiming and StartExecution):
    started now when its transfer is recorded (False), else True (the claims are
    released). Ended: True, and a record the execution did not finish (stopped,
    timed out) is marked CANCELLED or FAILED.
    """
    found = await _Executions(settings.workflow).find(transfer_id)
    if found is None:
        if record is None:
            return True
        await start_batch(settings, store, TransferRequest(
            sources=record.sources, destination=record.destination,
            requester=record.requester, transfer_id=transfer_id), route)
        return False
    if found["status"] == "RUNNING":
        return False
    if record is not None and record.status not in FINAL_STATUSES:
        status = "CANCELLED" if found["status"] == "ABORTED" else "FAILED"
        await store.update_transfer(transfer_id, status=status, updated_at=time.time())
    return True


# --- the configuration RunRoute needs

def load_route_settings() -> Settings:
    """The function's configuration without any secret: a route run reads the routes, the
    store and the workflow, and of each destination only its url and ``on_conflict``.
    So ``${aws-secret:...}`` in destinations is never fetched here (give the routes' PGP
    keys as ``recipient_key_secret``, read by the transfer functions)."""
    from fileferry.aws.settings import SECRET_SECTIONS, _document, resolve_secrets

    data, where = _document()
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: the top level must be a mapping of keys")
    destinations = data.get("destinations") or {}
    if not isinstance(destinations, dict):
        raise ConfigError(f"{where}: destinations must be a mapping of names")
    kept = {name: {k: v for k, v in (d or {}).items() if k in ("url", "on_conflict")}
            for name, d in destinations.items() if isinstance(d, dict)}
    data = {k: v for k, v in data.items() if k not in SECRET_SECTIONS}
    return parse_settings({**resolve_secrets(data), "destinations": kept}, where)


# --- the events

def _scheduled_time(event: dict[str, Any], clock: Clock) -> float:
    raw = event.get("scheduled_time")
    if raw is None or raw == "<aws.scheduler.scheduled-time>":
        return clock()
    try:
        return datetime.fromisoformat(str(raw).replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise UsageError(f"FileFerry-RunRoute: scheduled_time {raw!r} is not an ISO 8601 "
                         "time; the schedule's input should pass "
                         "<aws.scheduler.scheduled-time>") from None


def _object_created(event: dict[str, Any]) -> tuple[str, str] | None:
    """(bucket, key) of an S3 Object Created event from EventBridge, else None."""
    if event.get("source") != "aws.s3" or event.get("detail-type") != "Object Created":
        return None
    detail = event.get("detail") or {}
    bucket = (detail.get("bucket") or {}).get("name")
    key = (detail.get("object") or {}).get("key")
    if not isinstance(bucket, str) or not isinstance(key, str):
        raise UsageError("FileFerry-RunRoute: the Object Created event has no "
                         "detail.bucket.name or detail.object.key")
    return bucket, key


async def _tick(settings: Settings, at: float, clock: Clock) -> list[RouteRun]:
    async def start(name: str, trigger: str) -> RouteRun:
        return await run_route(settings, name, trigger=trigger, clock=clock, wait=False)

    scheduler = Scheduler(settings, clock=lambda: at, runner=start, since=at - TICK_WINDOW,
                          poll=False)
    try:
        return await scheduler.tick()
    finally:
        await scheduler.close()


async def _on_object(settings: Settings, bucket: str, key: str,
                     clock: Clock) -> list[RouteRun]:
    from urllib.parse import unquote_plus

    now = clock()
    # S3 URL-encodes keys in its notifications; a route matching either form runs
    names = sorted(set(routes_for_object(settings, bucket, key, now))
                   | set(routes_for_object(settings, bucket, unquote_plus(key), now)))
    runs = []
    for name in names:
        run = await run_route(settings, name, trigger="s3_event", clock=clock, wait=False)
        if run.ready_at is not None:
            from fileferry.store import open_store
            from fileferry.store.ledger import Ledger

            store = open_store(settings.store.url)
            try:  # the tick runs it when the object is old enough
                await Ledger(store).set_follow_up(name, run.ready_at)
            finally:
                await store.close()
        runs.append(run)
    busy = [r.route for r in runs if r.status == "BUSY"]
    if busy:
        raise LeaseHeld(f"route(s) {', '.join(busy)} are running already; the event is "
                        "delivered again later, when the object is looked at")
    return runs


async def handle_event(settings: Settings, event: dict[str, Any],
                       clock: Clock = time.time) -> dict[str, Any]:
    """Run what the event asks for; returns each run's outcome."""
    created = _object_created(event)
    if created is not None:
        runs = await _on_object(settings, *created, clock)
    elif event.get("tick") is True:
        runs = await _tick(settings, _scheduled_time(event, clock), clock)
    elif isinstance(event.get("route"), str):
        runs = [await run_route(settings, event["route"], clock=clock, wait=False)]
    else:
        raise UsageError("FileFerry-RunRoute: expected {\"tick\": true} (the schedule), an "
                         "S3 Object Created event from EventBridge, or {\"route\": \"NAME\"}; "
                         "see tests/events/run_route_*.json")
    return {"runs": [{"route": r.route, **r.summary(), "execution_arn": r.execution_arn,
                      "skipped": r.skipped} for r in runs]}


def run_routes(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """The Lambda handler (``fileferry.aws.handlers.run_route``)."""
    from fileferry.aws.runtime import logger

    if not isinstance(event, dict):
        raise UsageError(f"FileFerry-RunRoute: the event must be a JSON object, not "
                         f"{type(event).__name__}")
    result = asyncio.run(handle_event(load_route_settings(), event))
    for run in result["runs"]:
        logger.info("route run", extra={"route": run["route"], "status": run["status"],
                                        "transfer_id": run["transfer_id"],
                                        "trigger": run["trigger"]})
    return result
