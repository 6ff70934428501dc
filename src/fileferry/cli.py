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
import time
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from typer.exceptions import Abort, TyperException

from fileferry.config import Settings, load_settings
from fileferry.endpoints.registry import close_idle_destinations
from fileferry.errors import (
    FileFerryError,
    HostKeyMismatch,
    PolicyDenied,
    TransferFailed,
    UsageError,
)
from fileferry.models import TransferResult, new_transfer_id
from fileferry.transfer.engine import TransferRequest, run_transfer

__all__ = ["app", "main"]

if TYPE_CHECKING:
    from fileferry import console
    from fileferry.identity.principal import Principal
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
EXIT = {"SUCCEEDED": 0, "FAILED": 1, "REFUSED": 2, "CANCELLED": 1, "PENDING_APPROVAL": 3}
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


TokenOpt = Annotated[str | None, typer.Option(
    "--token", envvar="FILEFERRY_TOKEN", metavar="JWT", show_envvar=False,
    help="your SSO access token (prefer the FILEFERRY_TOKEN variable: arguments show in ps)")]


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
        principal = _principal(settings, token, user)
        if dry_run:
            settings = _dry_run_settings(settings, principal, paths)
    except FileFerryError as exc:
        _emit(TransferResult.refused(tid, exc), as_json)
    request = TransferRequest(sources=paths[:-1], destination=paths[-1],
                              requester=principal.user, dry_run=dry_run, transfer_id=tid)
    from fileferry.services import submit_transfer

    try:
        if dry_run:  # the plan only: no workflow, no store
            result = _run(run_transfer(settings, request))
        elif console.isatty():
            with console.ProgressBars() as bars:
                result = _run(submit_transfer(settings, request, [bars], principal=principal,
                                              wait_for_approval=not no_wait))
        else:
            result = _run(submit_transfer(settings, request, principal=principal,
                                          wait_for_approval=not no_wait))
    except FileFerryError as exc:  # outside the workflow, e.g. the state store is unreachable
        result = TransferResult(transfer_id=tid, status="REFUSED" if exc.exit_code == 2
                                else "FAILED", files=[], error=exc.to_dict())
    except Exception as exc:  # a bug: still one JSON line and exit 1
        logging.getLogger(__name__).exception("unexpected error")
        err = TransferFailed(f"internal error: {exc!r}")
        result = TransferResult(transfer_id=tid, status="FAILED", files=[], error=err.to_dict())
    _emit(result, as_json, plan_only=dry_run)


def _say(text: str) -> None:
    sys.stderr.write(f"fileferry: {text}\n")
    sys.stderr.flush()


def _principal(settings: Settings, token: str | None, user: str | None) -> Principal:
    """Who is asking: the token's user with ``sso:``, else the OS user (and say which)."""
    from fileferry.identity.principal import local_principal

    if settings.sso is None:
        if token:
            _say("--token is ignored: no sso is configured")
        principal = local_principal(user)
        me = getpass.getuser()
        _say(f"no sso configured: acting as the OS user {me}" if principal.user == me
             else f"no sso configured: acting as {principal.user} (--user), OS user {me}")
        return principal
    if not token:
        raise UsageError("sso is configured: give --token JWT or set FILEFERRY_TOKEN to your "
                         "access token from the identity provider")
    from fileferry.identity.tokens import authenticate

    principal = authenticate(settings.sso, token)
    if user is not None and user != principal.user:
        _say(f"--user is ignored: sso is configured; acting as {principal.user} (from the "
             "token)")
    return principal


def _dry_run_settings(settings: Settings, principal: Principal, paths: list[str]) -> Settings:
    """A dry run connects too: the policy is checked first, then credentials are fetched."""
    from fileferry.identity.policy import Facts, evaluate
    from fileferry.identity.secrets import with_credentials
    from fileferry.paths import split_destination

    name, _ = split_destination(paths[-1])
    facts = Facts(user=principal.user, groups=principal.groups, sources=paths[:-1],
                  destination=name, when=time.time())
    decision = evaluate(settings.policies, facts, server_mode=settings.sso is not None)
    if not decision.allowed:
        raise PolicyDenied(decision.reason)
    return with_credentials(settings, name)


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
    from fileferry.identity.secrets import DestinationSecrets

    try:
        settings = load_settings(config)
        dest = DestinationSecrets(settings).destination(name)
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
            asked = _run(request_cancel(settings, transfer_id))
            # nobody runs a transfer parked for approval: stop it here
            done = _run(stop_if_parked(settings, transfer_id)) if asked else None
    except FileFerryError as exc:
        _fail(exc, as_json)
    if not asked:
        _fail(UsageError(f"{transfer_id} is not running"), as_json)
    _report({"transfer_id": transfer_id,
             "cancel": "requested" if done is None else done.status.lower()}, as_json)


def _decide(decision: str, transfer_id: str, config: Path | None, token: str | None,
            reason: str | None, as_json: bool) -> None:
    from fileferry.services import approve_transfer, continue_transfer, reject_transfer

    decide = approve_transfer if decision == "approved" else reject_transfer
    try:
        settings = load_settings(config)
        principal = _principal(settings, token, None)
        recorded = _run(decide(settings, transfer_id, principal, reason))
        result = _run(continue_transfer(settings, transfer_id))
    except FileFerryError as exc:
        _fail(exc, as_json)
    data: dict[str, Any] = {"transfer_id": transfer_id, "decision": decision,
                            "by": recorded["approver"]}
    if result is None:
        data["transfer"] = "carried on by the process waiting for it"
    elif as_json:
        data["transfer"] = json.loads(result.to_json())
    else:
        data["transfer"] = f"{result.status} ({EXIT[result.status]})"
    _report(data, as_json)


ReasonOpt = Annotated[str | None, typer.Option("--reason", help="why (goes to the audit "
                                               "trail and the tickets)")]


@app.command()
def approve(transfer_id: Annotated[str, typer.Argument(help="transfer id")],
            config: ConfigOpt = None, token: TokenOpt = None, reason: ReasonOpt = None,
            as_json: JsonOpt = False) -> None:
    """Approve a transfer waiting for approval (you must be in its policy's group, and not
    its requester); it then carries on."""
    _decide("approved", transfer_id, config, token, reason, as_json)


@app.command()
def reject(transfer_id: Annotated[str, typer.Argument(help="transfer id")],
           config: ConfigOpt = None, token: TokenOpt = None, reason: ReasonOpt = None,
           as_json: JsonOpt = False) -> None:
    """Reject a transfer waiting for approval; it ends REFUSED (ApprovalRejected)."""
    _decide("rejected", transfer_id, config, token, reason, as_json)


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


def _print_json(body: dict[str, Any]) -> None:
    print(json.dumps(body, separators=(",", ":"), ensure_ascii=False))


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

            page = _run(local_view(load_settings(config), None, query))
    except FileFerryError as exc:
        _fail(exc, as_json)
    if as_json:
        _print_json(page)
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

            view = _run(local_view(load_settings(config), transfer_id, {}))
    except FileFerryError as exc:
        _fail(exc, as_json)
    if as_json:
        _print_json(view)
    else:
        console.print_transfer(view)


@app.command()
def serve(
    config: ConfigOpt = None,
    host: Annotated[str | None, typer.Option("--host", help="default: api.host "
                                             "(127.0.0.1)")] = None,
    port: Annotated[int | None, typer.Option("--port", min=0, max=65535,
                                             help="default: api.port (8080)")] = None,
) -> None:
    """Run the REST API and the dashboard; transfers run in the server's worker pool."""
    try:
        settings = load_settings(config)
        from fileferry.api.auth import BearerTokenAuthenticator, api_token

        token = api_token(settings)
    except FileFerryError as exc:
        _fail(exc, False)
    from fileferry.api.server import uvicorn_server

    host = host or settings.api.host
    port = settings.api.port if port is None else port
    if settings.sso is not None:  # the app then authenticates by OIDC (fileferry.api.sso)
        console.stderr.print(f"SSO: bearer JWTs from {settings.sso.issuer}; the dashboard "
                             "signs in at /login", highlight=False)
        console.stderr.print(f"FileFerry API and dashboard on http://{host}:{port}/",
                             highlight=False)
        uvicorn_server(settings, host, port).run()
        return
    if token.path is None:
        console.stderr.print("API token: api.token from the configuration", highlight=False)
    else:
        made = "generated a new API token into" if token.generated else "API token in"
        console.stderr.print(f"{made} {token.path} (readable by its owner only)",
                             highlight=False)
    console.stderr.print(f"FileFerry API and dashboard on http://{host}:{port}/",
                         highlight=False)
    uvicorn_server(settings, host, port, BearerTokenAuthenticator(token.value)).run()


store_app = typer.Typer(no_args_is_help=True, help="The state store (SQLite or DynamoDB).")
app.add_typer(store_app, name="store")


@store_app.command("init")
def store_init(config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """Create the store.url's SQLite schema or DynamoDB tables (TTL on leases); safe to re-run."""
    from fileferry.services import init_state_store

    try:
        settings = load_settings(config)
        tables = [entry.to_dict() for entry in _run(init_state_store(settings))]
    except FileFerryError as exc:
        _fail(exc, as_json)
    if as_json:
        print(json.dumps({"ok": True, "store": settings.store.url, "tables": tables},
                         separators=(",", ":")))
        return
    console.stdout.print(f"store: {settings.store.url}", highlight=False, markup=False)
    for entry in tables:
        ttl = f" (TTL on {entry['ttl']})" if entry["ttl"] else ""
        console.stdout.print(f"{entry['table']}: {entry['status']}{ttl}", highlight=False,
                             markup=False)


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


@app.command()
def chat(
    config: ConfigOpt = None,
    user: Annotated[str | None, typer.Option("--user", metavar="ID",
                                             help="who is asking without sso (default: the "
                                             "OS user); ignored when sso is configured")] = None,
    token: TokenOpt = None,
    session: Annotated[str | None, typer.Option(
        "--session", metavar="ID", help="continue this conversation (kept across runs with "
        "agent.persist_conversations)")] = None,
    offline: Annotated[bool, typer.Option("--offline", help="the offline planner even when "
                                          "agent.model_id is set")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Ask for transfers in plain words: one message a line on stdin (a pipe works too).
    Nothing is sent before you confirm the plan shown."""
    from fileferry.agent.terminal import offline_settings, run_chat

    try:
        settings = load_settings(config)
        principal = _principal(settings, token, user)
    except FileFerryError as exc:
        _fail(exc, as_json)
    if offline:
        settings = offline_settings(settings)
    raise typer.Exit(_run(run_chat(settings, principal, session, as_json=as_json)))


# run, routes, ledger, scheduler: registered on ``app`` when their module is imported
from fileferry.automation import commands as _automation_commands  # noqa: E402, F401
