"""``fileferry transfer``, ``resume``, ``history``, ``cancel``, ``demo``, ``list``, ``status``.

``transfer`` is a contract: with ``--json`` exactly one JSON line goes to
stdout on every exit, refusals included; exit 0 when every file was
delivered and verified, 1 when the transfer failed, 2 when it was refused
before anything moved, 3 when it waits for approval (``--no-wait``).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated

import typer

from fileferry.cli._common import (
    EXIT,
    ConfigOpt,
    JsonOpt,
    TokenOpt,
    app,
    console,
    dry_run_settings,
    emit,
    fail,
    principal,
    print_json,
    report,
    run,
)
from fileferry.config import load_settings
from fileferry.errors import FileFerryError, TransferFailed, UsageError
from fileferry.models import TransferResult, new_transfer_id
from fileferry.transfer.engine import TransferRequest, run_transfer

__all__ = ["cancel", "demo", "history", "list_", "resume", "status", "transfer"]


@app.command()
def transfer(
    paths: Annotated[list[str], typer.Argument(metavar="SOURCE... DESTINATION",
                                               help="s3://bucket/key or s3://bucket/prefix/ "
                                               "(one or more), then NAME:PATH")],
    config: ConfigOpt = None,
    user: Annotated[str | None, typer.Option("--user", metavar="ID",
                                             help="the requester without sso (default: the "
                                             "OS user); ignored when sso is configured")] = None,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
    dry_run: Annotated[bool, typer.Option("--dry-run",
                                          help="print the plan; move nothing")] = False,
    no_wait: Annotated[bool, typer.Option("--no-wait", help="when the policy asks for "
                                          "approval, exit 3 (PENDING_APPROVAL) at once instead "
                                          "of waiting; `approve` carries it on")] = False,
) -> None:
    """Stream S3 objects to a destination, verify them, and rename them into place."""
    tid = new_transfer_id()
    try:
        if len(paths) < 2:
            raise UsageError("give at least one SOURCE and a DESTINATION, e.g. "
                             "fileferry transfer s3://bucket/report.csv acme:incoming/")
        settings = load_settings(config)
        who = principal(settings, token, user)
        if dry_run:
            settings = dry_run_settings(settings, who, paths)
    except FileFerryError as exc:
        emit(TransferResult.refused(tid, exc), as_json)
    request = TransferRequest(sources=paths[:-1], destination=paths[-1],
                              requester=who.user, dry_run=dry_run, transfer_id=tid)
    from fileferry.services import submit_transfer

    try:
        if dry_run:  # the plan only: no workflow, no store
            result = run(run_transfer(settings, request))
        elif console.isatty():
            with console.ProgressBars() as bars:
                result = run(submit_transfer(settings, request, [bars], principal=who,
                                             wait_for_approval=not no_wait))
        else:
            result = run(submit_transfer(settings, request, principal=who,
                                         wait_for_approval=not no_wait))
    except FileFerryError as exc:  # outside the workflow, e.g. the state store is unreachable
        result = TransferResult(transfer_id=tid, status="REFUSED" if exc.exit_code == 2
                                else "FAILED", files=[], error=exc.to_dict())
    except Exception as exc:  # a bug: still one JSON line and exit 1
        logging.getLogger(__name__).exception("unexpected error")
        err = TransferFailed(f"internal error: {exc!r}")
        result = TransferResult(transfer_id=tid, status="FAILED", files=[], error=err.to_dict())
    emit(result, as_json, plan_only=dry_run)


@app.command()
def resume(
    transfer_id: Annotated[str | None, typer.Argument(help="the transfer to resume "
                                                      "(default: every unfinished one)")] = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Continue unfinished transfers from their last checkpoint (after a crash), and
    deliver ticket work queued while ServiceNow was unavailable."""
    from fileferry.services import resume_transfers

    try:
        results = run(resume_transfers(load_settings(config), transfer_id))
    except FileFerryError as exc:
        fail(exc, as_json)
    for result in results:
        if as_json:
            print(result.to_json())
        else:
            console.print_result(result)
    if not results and not as_json:
        console.stdout.print("nothing to resume")
    worst = max((EXIT[r.status] for r in results), default=0)
    raise typer.Exit(worst)


@app.command()
def history(transfer_id: Annotated[str, typer.Argument(help="transfer id")],
            config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """Each state the transfer's workflow entered and left, with times, retries and errors."""
    from fileferry.services import history as load_history

    try:
        events = run(load_history(load_settings(config), transfer_id))
    except FileFerryError as exc:
        fail(exc, as_json)
    if not events:
        fail(UsageError(f"no history for {transfer_id}"), as_json)
    if as_json:
        print(json.dumps({"ok": True, "transfer_id": transfer_id, "events": events},
                         separators=(",", ":")))
        return
    console.print_history(events)


ApiOpt = Annotated[str | None, typer.Option("--api", metavar="URL",
                                             help="ask this FileFerry server instead of "
                                             "the local store, e.g. http://127.0.0.1:8080")]
ApiTokenOpt = Annotated[str | None, typer.Option("--token", envvar="FILEFERRY_TOKEN",
                                                 show_envvar=True, show_default=False,
                                                 help="with --api: the server's token")]


@app.command()
def cancel(transfer_id: Annotated[str, typer.Argument(help="transfer id")],
           config: ConfigOpt = None, as_json: JsonOpt = False, api: ApiOpt = None,
           token: ApiTokenOpt = None) -> None:
    """Stop a running transfer cleanly: temporary files removed, tickets updated."""
    from fileferry.services import request_cancel, stop_if_parked

    try:
        done = None
        if api is not None:
            from fileferry.api.client import ApiClient

            ApiClient(api, token).cancel(transfer_id)
            asked = True
        else:
            settings = load_settings(config)
            asked = run(request_cancel(settings, transfer_id))
            # nobody runs a transfer parked for approval: stop it here
            done = run(stop_if_parked(settings, transfer_id)) if asked else None
    except FileFerryError as exc:
        fail(exc, as_json)
    if not asked:
        fail(UsageError(f"{transfer_id} is not running"), as_json)
    report({"transfer_id": transfer_id,
            "cancel": "requested" if done is None else done.status.lower()}, as_json)


@app.command()
def demo(
    workdir: Annotated[Path, typer.Option("--dir", help="where the demo keeps its files")] =
    Path(".fileferry-demo"),
    keep_running: Annotated[bool, typer.Option("--keep-running", help="leave the stand-in "
                                               "servers up until Ctrl-C")] = False,
) -> None:
    """Run a real transfer through local stand-in servers (S3 and SFTP on 127.0.0.1)."""
    from fileferry.sandbox.demo import run_demo

    raise typer.Exit(run(run_demo(workdir, keep_running)))


@app.command(name="list")
def list_(
    config: ConfigOpt = None,
    status: Annotated[str | None, typer.Option("--status", metavar="S",
                                               help="PENDING, RUNNING, SUCCEEDED, FAILED, "
                                               "REFUSED or CANCELLED")] = None,
    requester: Annotated[str | None, typer.Option("--requester", metavar="R")] = None,
    destination: Annotated[str | None, typer.Option("--destination", metavar="D",
                                                    help="NAME, or NAME:PATH")] = None,
    limit: Annotated[int, typer.Option("--limit", metavar="N", min=1, max=200)] = 50,
    cursor: Annotated[str | None, typer.Option("--cursor", help="the next page")] = None,
    as_json: JsonOpt = False, api: ApiOpt = None, token: ApiTokenOpt = None,
) -> None:
    """Transfers in the local store (or on a server with --api), filtered and paged."""
    from typing import get_args

    from fileferry.store import TransferRecordStatus

    allowed = get_args(TransferRecordStatus)
    try:
        if status is not None and status not in allowed:
            raise UsageError(f"--status {status!r}: use one of {', '.join(allowed)}")
        query = {"status": status, "requester": requester, "destination": destination,
                 "limit": limit, "cursor": cursor}
        if api is not None:
            from fileferry.api.client import ApiClient

            page = ApiClient(api, token).list(**query)
        else:
            from fileferry.api.client import local_view

            page = run(local_view(load_settings(config), None, query))
    except FileFerryError as exc:
        fail(exc, as_json)
    if as_json:
        print_json(page)
    else:
        console.print_transfers(page)


@app.command()
def status(transfer_id: Annotated[str, typer.Argument(help="transfer id")],
           config: ConfigOpt = None, as_json: JsonOpt = False, api: ApiOpt = None,
           token: ApiTokenOpt = None) -> None:
    """One transfer: progress, files (size, SHA-256, check, retries), tickets, history."""
    try:
        if api is not None:
            from fileferry.api.client import ApiClient

            view = ApiClient(api, token).get(transfer_id)
        else:
            from fileferry.api.client import local_view

            view = run(local_view(load_settings(config), transfer_id, {}))
    except FileFerryError as exc:
        fail(exc, as_json)
    if as_json:
        print_json(view)
    else:
        console.print_transfer(view)
