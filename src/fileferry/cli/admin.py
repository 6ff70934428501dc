"""``fileferry hostkey``, ``check``, ``serve`` and ``store init``: setting FileFerry up.

``hostkey`` and ``check`` change nothing unless asked (``hostkey --pin``);
``store init`` is safe to re-run; ``serve`` runs until interrupted.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer

from fileferry.cli._common import ConfigOpt, JsonOpt, app, console, fail, report, run
from fileferry.config import load_settings
from fileferry.errors import FileFerryError, HostKeyMismatch

__all__ = ["check", "hostkey", "serve", "store_app", "store_init"]


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
        key = run(sftp.fetch_host_key(dest))
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
        fail(exc, as_json)
    data = {"destination": name, "address": f"{dest.parsed.host}:{dest.parsed.port}",
            "key_type": key.get_algorithm(), "fingerprint": fingerprint, "state": state}
    if written:
        data["known_hosts"] = written
    report(data, as_json)


@app.command()
def check(name: Annotated[str, typer.Argument(help="destination name")],
          config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """Connect, log in, check the root is writable, list the checks that work; change nothing."""
    from fileferry.endpoints.probe import probe_destination
    from fileferry.identity.secrets import DestinationSecrets

    try:
        settings = load_settings(config)
        dest = DestinationSecrets(settings).destination(name)
        data = run(probe_destination(name, dest, settings.transfer))
    except FileFerryError as exc:
        fail(exc, as_json)
    report(data, as_json)


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
        fail(exc, False)
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
        tables = [entry.to_dict() for entry in run(init_state_store(settings))]
    except FileFerryError as exc:
        fail(exc, as_json)
    if as_json:
        print(json.dumps({"ok": True, "store": settings.store.url, "tables": tables},
                         separators=(",", ":")))
        return
    console.stdout.print(f"store: {settings.store.url}", highlight=False, markup=False)
    for entry in tables:
        ttl = f" (TTL on {entry['ttl']})" if entry["ttl"] else ""
        console.stdout.print(f"{entry['table']}: {entry['status']}{ttl}", highlight=False,
                             markup=False)
