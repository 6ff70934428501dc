"""What every ``fileferry`` command shares: the Typer ``app``, its options and helpers.

The commands live in the modules beside this one, grouped by what they act
on; importing :mod:`fileferry.cli` registers them all on :data:`app`.

Exit codes follow :data:`EXIT` (a transfer's status) or the error's
``exit_code`` (2 for bad input, also for usage errors caught by :func:`main`).
Heavy libraries (rich, boto3, asyncssh, FastAPI) are imported inside the
commands, not here: ``fileferry --help`` and a ``--json`` run off a terminal
should start fast.
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

from fileferry.config import Settings
from fileferry.endpoints.registry import close_idle_destinations
from fileferry.errors import FileFerryError, PolicyDenied, UsageError
from fileferry.models import TransferResult, new_transfer_id

__all__ = [
    "EXIT", "ConfigOpt", "JsonOpt", "TokenOpt", "app", "console", "dry_run_settings", "emit",
    "fail", "main", "principal", "print_json", "report", "run", "say",
]

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
TokenOpt = Annotated[str | None, typer.Option(
    "--token", envvar="FILEFERRY_TOKEN", metavar="JWT", show_envvar=False,
    help="your SSO access token (prefer the FILEFERRY_TOKEN variable: arguments show in ps)")]
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


def run(coro: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run`` with enough worker threads for S3 reads and hashing."""

    async def with_executor() -> T:
        asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(max_workers=48))
        try:
            return await coro
        finally:
            await close_idle_destinations()

    return asyncio.run(with_executor())


def emit(result: TransferResult, as_json: bool, plan_only: bool = False) -> None:
    """Print a transfer's result (one JSON line with ``--json``) and exit by its status."""
    if as_json:
        sys.stdout.write(result.to_json() + "\n")
        sys.stdout.flush()
    else:
        console.print_result(result, plan_only=plan_only)
    raise typer.Exit(EXIT[result.status])


def say(text: str) -> None:
    """A note on stderr, never on stdout (which ``--json`` keeps to one line)."""
    sys.stderr.write(f"fileferry: {text}\n")
    sys.stderr.flush()


def principal(settings: Settings, token: str | None, user: str | None) -> Principal:
    """Who is asking: the token's user with ``sso:``, else the OS user (and say which)."""
    from fileferry.identity.principal import local_principal

    if settings.sso is None:
        if token:
            say("--token is ignored: no sso is configured")
        found = local_principal(user)
        me = getpass.getuser()
        say(f"no sso configured: acting as the OS user {me}" if found.user == me
            else f"no sso configured: acting as {found.user} (--user), OS user {me}")
        return found
    if not token:
        raise UsageError("sso is configured: give --token JWT or set FILEFERRY_TOKEN to your "
                         "access token from the identity provider")
    from fileferry.identity.tokens import authenticate

    found = authenticate(settings.sso, token)
    if user is not None and user != found.user:
        say(f"--user is ignored: sso is configured; acting as {found.user} (from the "
            "token)")
    return found


def dry_run_settings(settings: Settings, who: Principal, paths: list[str]) -> Settings:
    """A dry run connects too: the policy is checked first, then credentials are fetched."""
    from fileferry.identity.policy import Facts, evaluate
    from fileferry.identity.secrets import with_credentials
    from fileferry.paths import split_destination

    name, _ = split_destination(paths[-1])
    facts = Facts(user=who.user, groups=who.groups, sources=paths[:-1],
                  destination=name, when=time.time())
    decision = evaluate(settings.policies, facts, server_mode=settings.sso is not None)
    if not decision.allowed:
        raise PolicyDenied(decision.reason)
    return with_credentials(settings, name)


def fail(exc: FileFerryError, as_json: bool) -> None:
    """Report ``exc`` (``{"ok": false, ...}`` with ``--json``) and exit by its exit code."""
    if as_json:
        print(json.dumps({"ok": False, "error": exc.to_dict()}, separators=(",", ":")))
    else:
        console.stderr.print(f"[red]error[/red]: {exc.name}: {exc}", highlight=False)
    raise typer.Exit(exc.exit_code)


def report(data: dict[str, Any], as_json: bool) -> None:
    """``{"ok": true, **data}`` with ``--json``, else one ``key: value`` line per item."""
    if as_json:
        print(json.dumps({"ok": True, **data}, separators=(",", ":")))
    else:
        for key, value in data.items():
            shown = ", ".join(value) if isinstance(value, list) else value
            console.stdout.print(f"{key.replace('_', ' ')}: {shown}", highlight=False)


def print_json(body: dict[str, Any]) -> None:
    """One compact JSON line, non-ASCII kept as is."""
    print(json.dumps(body, separators=(",", ":"), ensure_ascii=False))


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
