"""``fileferry run``, ``routes``, ``ledger`` and ``scheduler`` (registered on the CLI app).

``run`` exits 0 when the route sent what was new (or found nothing new, or
another run of it was in progress), 1 when the transfer failed or a
post-delivery action failed, 2 when it was refused.
"""

from __future__ import annotations

import asyncio
import csv
import json
import signal
import sys
import time
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import typer

from fileferry.cli._common import ConfigOpt, JsonOpt, app
from fileferry.cli._common import fail as _fail
from fileferry.cli._common import run as _run
from fileferry.config import Settings, load_settings
from fileferry.errors import FileFerryError

__all__ = ["ledger", "routes", "run", "scheduler"]


class _Console:
    """``fileferry.console`` on first use (rich is slow to import; see cli/_common.py)."""

    def __getattr__(self, name: str) -> Any:
        from fileferry import console as real

        return getattr(real, name)


console = _Console()


def _when(epoch: float | None) -> str:
    return "-" if epoch is None else datetime.fromtimestamp(epoch, UTC).isoformat(
        timespec="seconds")


@app.command("run")
def run(route: Annotated[str, typer.Argument(help="route name from the configuration")],
        config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """Run a route now: send what is new under its prefix as one verified transfer."""
    from fileferry.automation.routes import run_route

    try:
        result = _run(run_route(load_settings(config), route))
    except FileFerryError as exc:
        _fail(exc, as_json)
    if as_json:
        sys.stdout.write(result.model_dump_json() + "\n")
    else:
        shown = f"route {route}: {result.status}"
        if result.transfer_id:
            shown += f" ({result.transfer_id}, {len(result.files)} file(s))"
        console.stdout.print(shown, highlight=False)
        skipped = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in result.skipped.items() if v)
        if skipped:
            console.stdout.print(f"skipped: {skipped}", highlight=False)
        for file in result.files:
            console.stdout.print(f"  {file.status:9} {file.source} -> {file.destination}",
                                 highlight=False)
        if result.trigger_file:
            console.stdout.print(f"trigger file: {result.trigger_file}", highlight=False)
        for failure in result.actions_failed:
            console.stderr.print(f"[red]post-delivery action failed[/red]: {failure}",
                                 highlight=False)
        if result.error:
            console.stderr.print(f"[red]error[/red]: {result.error['type']}: "
                                 f"{result.error['message']}", highlight=False)
    raise typer.Exit(result.exit_code)


async def _route_rows(settings: Settings) -> list[dict[str, Any]]:
    from fileferry.automation.scheduler import next_fire
    from fileferry.store import open_store
    from fileferry.store.ledger import Ledger

    store = open_store(settings.store.url)
    try:
        rows = []
        for name, route in sorted(settings.routes.items()):
            state = await Ledger(store).state(name)
            schedule = route.triggers.schedule
            events = route.triggers.events
            rows.append({
                "route": name,
                "source": f"s3://{route.source.bucket}/{route.source.prefix}",
                "destination": route.destination,
                "schedule": f"{schedule.cron} {schedule.timezone}" if schedule else None,
                "s3_events": None if events is None else (events.queue_url or "poll"),
                "next_run": _when(next_fire(route, time.time())) if schedule else None,
                "last_run": state.last_run, "last_transfer": state.last_transfer})
        return rows
    finally:
        await store.close()


@app.command("routes")
def routes(config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """List the routes with their triggers, next scheduled run and last result."""
    try:
        rows = _run(_route_rows(load_settings(config)))
    except FileFerryError as exc:
        _fail(exc, as_json)
    if as_json:
        print(json.dumps({"ok": True, "routes": rows}, separators=(",", ":")))
        return
    if not rows:
        console.stdout.print("no routes configured (see routes: in the README)")
    for row in rows:
        last = row["last_run"] or {}
        result = (f"{last.get('status')} at {_when(last.get('at'))}"
                  + (f" ({last['transfer_id']})" if last.get("transfer_id") else "")
                  if last else "never run")
        console.stdout.print(
            f"{row['route']}: {row['source']} -> {row['destination']}\n"
            f"  schedule: {row['schedule'] or '-'}  s3 events: {row['s3_events'] or '-'}\n"
            f"  next run: {row['next_run'] or '-'}  last result: {result}", highlight=False)


LEDGER_COLUMNS = ("key", "etag", "version_id", "size", "sha256", "ciphertext_sha256",
                  "ciphertext_size", "destination", "delivered_at", "transfer_id", "state",
                  "actions")


@app.command("ledger")
def ledger(route: Annotated[str, typer.Argument(help="route name")], config: ConfigOpt = None,
           fmt: Annotated[Literal["table", "csv", "json"], typer.Option(
               "--format", help="table, or csv/json for auditors")] = "table",
           all_entries: Annotated[bool, typer.Option(
               "--all", help="also claims and released entries")] = False) -> None:
    """What a route has delivered: object, version, sizes, SHA-256, where, when, transfer."""
    from fileferry.automation.routes import route_settings
    from fileferry.store import open_store
    from fileferry.store.ledger import Ledger

    async def load() -> list[dict[str, Any]]:
        settings = load_settings(config)
        route_settings(settings, route)
        store = open_store(settings.store.url)
        try:
            entries = await Ledger(store).entries(route)
        finally:
            await store.close()
        return [e.model_dump() for e in entries if all_entries or e.state == "delivered"]

    try:
        rows = _run(load())
    except FileFerryError as exc:
        _fail(exc, fmt == "json")
    if fmt == "json":
        print(json.dumps({"ok": True, "route": route, "entries": rows}, separators=(",", ":")))
        return
    if fmt == "csv":
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(LEDGER_COLUMNS)
        for row in rows:
            writer.writerow([json.dumps(row[c], sort_keys=True) if c == "actions"
                             else _when(row[c]) if c == "delivered_at" and row[c]
                             else "" if row[c] is None else row[c] for c in LEDGER_COLUMNS])
        return
    for row in rows:
        console.stdout.print(f"{_when(row['delivered_at'])}  {row['key']}  {row['size']} B  "
                             f"{(row['sha256'] or '')[:16]}  -> {row['destination']}  "
                             f"{row['transfer_id']}", highlight=False)


@app.command("scheduler")
def scheduler(config: ConfigOpt = None,
              once: Annotated[bool, typer.Option("--once", help="run what is due now, "
                                                 "then exit")] = False) -> None:
    """Run routes on their schedules and S3 events until interrupted (without the API)."""
    from fileferry.automation.scheduler import Scheduler

    async def main(settings: Settings) -> int:
        loop = Scheduler(settings)
        try:
            if once:
                return max((r.exit_code for r in await loop.tick()), default=0)
            stop = asyncio.Event()
            for sig in (signal.SIGINT, signal.SIGTERM):
                asyncio.get_running_loop().add_signal_handler(sig, stop.set)
            await loop.serve(stop)
            return 0
        finally:
            await loop.close()

    try:
        code = _run(main(load_settings(config)))
    except FileFerryError as exc:
        _fail(exc, False)
    raise typer.Exit(code)
