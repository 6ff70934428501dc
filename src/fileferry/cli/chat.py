"""``fileferry chat``: ask for transfers in plain words, one message a line on stdin.

Nothing is sent before the person confirms the plan shown; ``--offline``
uses the offline planner even when ``agent.model_id`` names a Bedrock model.
"""

from __future__ import annotations

from typing import Annotated

import typer

from fileferry.cli._common import ConfigOpt, JsonOpt, TokenOpt, app, fail, principal, run
from fileferry.config import load_settings
from fileferry.errors import FileFerryError

__all__ = ["chat"]


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
        who = principal(settings, token, user)
    except FileFerryError as exc:
        fail(exc, as_json)
    if offline:
        settings = offline_settings(settings)
    raise typer.Exit(run(run_chat(settings, who, session, as_json=as_json)))
