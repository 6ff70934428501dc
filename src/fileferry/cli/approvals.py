"""``fileferry approve`` and ``reject``: decide on a transfer waiting for approval.

The decision is recorded first (only a member of the policy's approval group
who is not the requester may decide), then the transfer carries on here
unless another process is already waiting for it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from fileferry.cli._common import (
    EXIT,
    ConfigOpt,
    JsonOpt,
    TokenOpt,
    app,
    fail,
    principal,
    report,
    run,
)
from fileferry.config import load_settings
from fileferry.errors import FileFerryError

__all__ = ["approve", "reject"]


def _decide(decision: str, transfer_id: str, config: Path | None, token: str | None,
            reason: str | None, as_json: bool) -> None:
    from fileferry.services import approve_transfer, continue_transfer, reject_transfer

    decide = approve_transfer if decision == "approved" else reject_transfer
    try:
        settings = load_settings(config)
        who = principal(settings, token, None)
        recorded = run(decide(settings, transfer_id, who, reason))
        result = run(continue_transfer(settings, transfer_id))
    except FileFerryError as exc:
        fail(exc, as_json)
    data: dict[str, Any] = {"transfer_id": transfer_id, "decision": decision,
                            "by": recorded["approver"]}
    if result is None:
        data["transfer"] = "carried on by the process waiting for it"
    elif as_json:
        data["transfer"] = json.loads(result.to_json())
    else:
        data["transfer"] = f"{result.status} ({EXIT[result.status]})"
    report(data, as_json)


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
