"""The policy check of ``ValidateInput``: before anything is read, and again once listed.

A denial is written to the audit trail, still gets its tickets (the audit ticket
says what was refused and why), and raises ``PolicyDenied`` (exit 2, HTTP 403).
"""

from __future__ import annotations

import logging

from fileferry.errors import PolicyDenied
from fileferry.identity.policy import Decision, Facts, evaluate
from fileferry.models import FilePlan
from fileferry.workflow.models import ExecutionInput
from fileferry.workflow.steps.deps import Deps

__all__ = ["enforce_policy"]

log = logging.getLogger(__name__)


async def _deny(inp: ExecutionInput, deps: Deps, name: str, decision: Decision) -> None:
    detail = {"requester": inp.requester, "groups": sorted(inp.groups),
              "sources": list(inp.sources), "destination": name, "reason": decision.reason}
    await deps.store.append_audit(inp.transfer_id, "policy_denied", detail, deps.clock())
    tickets = await deps.ticketing.create(inp.transfer_id, {
        "transfer_id": inp.transfer_id, "requester": inp.requester,
        "destination": inp.destination, "sources": list(inp.sources), "bytes_total": 0,
        "files_total": 0, "policy": decision.label, "outcome": "DENIED"})
    await deps.store.update_transfer(inp.transfer_id, tickets=tickets.model_dump())
    raise PolicyDenied(f"{decision.reason}. Ask an administrator for a policy that allows "
                       "it, or send something a policy covers")


async def enforce_policy(inp: ExecutionInput, deps: Deps, name: str,
                         plans: list[FilePlan] | None = None) -> Decision:
    """The allowing decision; with ``plans`` the listed objects and total size count too."""
    sources = [p.source for p in plans] if plans is not None else list(inp.sources)
    total = sum(p.size for p in plans) if plans is not None else None
    facts = Facts(user=inp.requester, groups=frozenset(inp.groups), sources=sources,
                  destination=name, when=deps.clock(), total_size=total)
    decision = evaluate(deps.settings.policies, facts,
                        server_mode=deps.settings.sso is not None)
    if not decision.allowed:
        await _deny(inp, deps, name, decision)
    if plans is not None:
        if decision.rule is None:
            log.warning("%s: %s (configure sso: and policies: to restrict it)",
                        inp.transfer_id, decision.label)
        await deps.store.append_audit(inp.transfer_id, "policy_allowed", {
            "policy": decision.label, "requester": inp.requester,
            "approval_group": decision.approval.group if decision.approval else None},
            deps.clock())
    return decision
