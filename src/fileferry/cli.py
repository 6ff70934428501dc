"""The ``fileferry`` command line.

``transfer`` is a contract: with ``--json`` exactly one JSON line goes to
stdout on every exit, refusals included; exit 0 when every file was
delivered and verified, 1 when the transfer failed, 2 when it was refused
before anything moved.
"""

from __future__ import annotations

import asyncio
import getpass
import json
import logging
import sys
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from typer.exceptions import Abort, TyperException

from fileferry.config import load_settings
from fileferry.endpoints.registry import close_idle_destinations
from fileferry.errors import FileFerryError, HostKeyMismatch, TransferFailed, UsageError
from fileferry.models import TransferResult, new_transfer_id
from fileferry.transfer.engine import TransferRequest, run_transfer

__all__ = ["app", "main"]

if TYPE_CHECKING:
    from fileferry import console
else:
    class _LazyConsole:
        """``fileferry.console`` on first use: rich costs ~65 ms to import, and a
        ``--json`` run off a terminal never draws anything."""

        def isatty(self) -> bool:
            return sys.stderr.isatty()

        def __getattr__(self, name: str) -> Any:
            from fileferry import console as real

            return getattr(real, name)

    console = _LazyConsole()

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Verified, auditable hand-offs of S3 objects to SFTP partners.")

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", metavar="FILE",
                                                help="configuration file (default: "
                                                "$FILEFERRY_CONFIG, else ./fileferry.yaml)")]
JsonOpt = Annotated[bool, typer.Option("--json", help="one JSON line on stdout")]
EXIT = {"SUCCEEDED": 0, "FAILED": 1, "REFUSED": 2, "CANCELLED": 1}
T = TypeVar("T")


@app.callback()
def _root(verbose: Annotated[int, typer.Option("--verbose", "-v", count=True,
                                               help="more logging on stderr")] = 0) -> None:
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if verbose < 2:
        logging.getLogger("asyncssh").setLevel(logging.WARNING)


def _run(coro: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run`` with enough worker threads for S3 reads and hashing."""

    async def with_executor() -> T:
        asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(max_workers=48))
        try:
            return await coro
        finally:
            await close_idle_destinations()

    return asyncio.run(with_executor())


def _emit(result: TransferResult, as_json: bool, plan_only: bool = False) -> None:
    if as_json:
        sys.stdout.write(result.to_json() + "\n")
        sys.stdout.flush()
    else:
        console.print_result(result, plan_only=plan_only)
    raise typer.Exit(EXIT[result.status])


@app.command()
def transfer(
    paths: Annotated[list[str], typer.Argument(metavar="SOURCE... DESTINATION",
                                               help="s3://bucket/key or s3://bucket/prefix/ "
                                               "(one or more), then NAME:PATH")],
    config: ConfigOpt = None,
    user: Annotated[str | None, typer.Option("--user", metavar="ID",
                                             help="the requester (default: the OS user)")] = None,
    as_json: JsonOpt = False,
    dry_run: Annotated[bool, typer.Option("--dry-run",
                                          help="print the plan; move nothing")] = False,
) -> None:
    """Stream S3 objects to a destination, verify them, and rename them into place."""
    tid = new_transfer_id()
    try:
        if len(paths) < 2:
            raise UsageError("give at least one SOURCE and a DESTINATION, e.g. "
                             "fileferry transfer s3://bucket/report.csv acme:incoming/")
        settings = load_settings(config)
    except FileFerryError as exc:
        _emit(TransferResult.refused(tid, exc), as_json)
    request = TransferRequest(sources=paths[:-1], destination=paths[-1],
                              requester=user or getpass.getuser(), dry_run=dry_run,
                              transfer_id=tid)
    from fileferry.services import submit_transfer

    try:
        if dry_run:  # the plan only: no workflow, no store
            result = _run(run_transfer(settings, request))
        elif console.isatty():
            with console.ProgressBars() as bars:
                result = _run(submit_transfer(settings, request, [bars]))
        else:
            result = _run(submit_transfer(settings, request))
    except Exception as exc:  # a bug: still one JSON line and exit 1
        logging.getLogger(__name__).exception("unexpected error")
        err = TransferFailed(f"internal error: {exc!r}")
        result = TransferResult(transfer_id=tid, status="FAILED", files=[], error=err.to_dict())
    _emit(result, as_json, plan_only=dry_run)


def _fail(exc: FileFerryError, as_json: bool) -> None:
    if as_json:
        print(json.dumps({"ok": False, "error": exc.to_dict()}, separators=(",", ":")))
    else:
        console.stderr.print(f"[red]error[/red]: {exc.name}: {exc}", highlight=False)
    raise typer.Exit(exc.exit_code)


def _report(data: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps({"ok": True, **data}, separators=(",", ":")))
    else:
        for key, value in data.items():
            shown = ", ".join(value) if isinstance(value, list) else value
            console.stdout.print(f"{key.replace('_', ' ')}: {shown}", highlight=False)


@app.command()
def hostkey(
    name: Annotated[str, typer.Argument(help="destination name from the configuration")],
    config: ConfigOpt = None,
    pin: Annotated[bool, typer.Option("--pin", help="write the key to the destination's "
                                      "known_hosts")] = False,
    replace: Annotated[bool, typer.Option("--replace", help="with --pin: replace a "
                                          "different pinned key")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Fetch and show a destination's SSH host key; pin it when asked."""
    from fileferry.endpoints import sftp
    from fileferry.transfer.engine import destination_settings

    try:
        dest = destination_settings(load_settings(config), name)
        key = _run(sftp.fetch_host_key(dest))
        fingerprint = key.get_fingerprint("sha256")
        pinned = sftp.pinned_keys(dest)
        state = ("pinned" if key in pinned or dest.host_key_fingerprint == fingerprint
                 else "different key pinned" if pinned or dest.host_key_fingerprint
                 else "not pinned")
        if pin and state == "different key pinned" and not replace:
            raise HostKeyMismatch(f"{name} offers {fingerprint}, which differs from the pinned "
                                  "key; confirm it with the partner, then add --replace")
        written = None
        if pin and state != "pinned":
            written = str(sftp.pin_host_key(dest, key, replace=replace))
            state = "pinned"
    except FileFerryError as exc:
        _fail(exc, as_json)
    data = {"destination": name, "address": f"{dest.parsed.host}:{dest.parsed.port}",
            "key_type": key.get_algorithm(), "fingerprint": fingerprint, "state": state}
    if written:
        data["known_hosts"] = written
    _report(data, as_json)


@app.command()
def check(name: Annotated[str, typer.Argument(help="destination name")],
          config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """Connect, log in, check the root is writable, list the checks that work; change nothing."""
    from fileferry.endpoints.probe import probe_destination
    from fileferry.transfer.engine import destination_settings

    try:
        settings = load_settings(config)
        dest = destination_settings(settings, name)
        data = _run(probe_destination(name, dest, settings.transfer))
    except FileFerryError as exc:
        _fail(exc, as_json)
    _report(data, as_json)


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
        results = _run(resume_transfers(load_settings(config), transfer_id))
    except FileFerryError as exc:
        _fail(exc, as_json)
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
        events = _run(load_history(load_settings(config), transfer_id))
    except FileFerryError as exc:
        _fail(exc, as_json)
    if not events:
        _fail(UsageError(f"no history for {transfer_id}"), as_json)
    if as_json:
        print(json.dumps({"ok": True, "transfer_id": transfer_id, "events": events},
                         separators=(",", ":")))
        return
    console.print_history(events)


@app.command()
def cancel(transfer_id: Annotated[str, typer.Argument(help="transfer id")],
           config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """Stop a running transfer cleanly: temporary files removed, tickets updated."""
    from fileferry.services import request_cancel

    try:
        asked = _run(request_cancel(load_settings(config), transfer_id))
    except FileFerryError as exc:
        _fail(exc, as_json)
    if not asked:
        _fail(UsageError(f"{transfer_id} is not running"), as_json)
    _report({"transfer_id": transfer_id, "cancel": "requested"}, as_json)


@app.command()
def demo(
    workdir: Annotated[Path, typer.Option("--dir", help="where the demo keeps its files")] =
    Path(".fileferry-demo"),
    keep_running: Annotated[bool, typer.Option("--keep-running", help="leave the stand-in "
                                               "servers up until Ctrl-C")] = False,
) -> None:
    """Run a real transfer through local stand-in servers (S3 and SFTP on 127.0.0.1)."""
    from fileferry.sandbox.demo import run_demo

    raise typer.Exit(_run(run_demo(workdir, keep_running)))


def main() -> None:
    """Console entry point: usage errors also honour ``--json`` and exit 2."""
    try:
        code = app(standalone_mode=False)
    except Abort:
        sys.exit(130)
    except TyperException as exc:  # typer's usage errors (it no longer uses click)
        if "--json" in sys.argv[1:]:
            formatter = getattr(exc, "format_message", None)
            message = formatter() if callable(formatter) else str(exc)
            print(TransferResult.refused(new_transfer_id(), UsageError(message)).to_json())
        elif callable(show := getattr(exc, "show", None)):
            show()
        else:
            print(exc, file=sys.stderr)
        sys.exit(2)
    sys.exit(code if isinstance(code, int) else 0)


# run, routes, ledger, scheduler: registered on ``app`` when their module is imported
from fileferry.automation import commands as _automation_commands  # noqa: E402, F401
