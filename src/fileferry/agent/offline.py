"""The offline planner: direct requests, parsed by a small grammar, through the same tools.

Without ``agent.model_id`` the chat still works, with no cloud access. It
understands, case-insensitively (a trailing "." "!" or "please" is fine):

* ``send|transfer|copy|deliver|upload|plan SOURCE... to NAME[:PATH]`` – SOURCEs are
  ``s3://`` URLs (keys, prefixes ending in ``/``, patterns with ``*``), separated
  by spaces, commas or "and"; a bare NAME means its root. Answers with the plan.
* ``yes`` / ``confirm`` / ``ok, go ahead`` (see ``conversation.confirmation``) after a
  plan: creates the tickets and starts the transfer. ``no`` drops the plan.
* ``status [of] ID``, ``cancel ID``, ``list destinations``, ``help``.

Anything else is refused with what it understands. Only the user's message is
ever parsed: tool results (object names among them) are shown, never read as
requests.
"""

from __future__ import annotations

import re

from fileferry.agent.chat import ChatAgent
from fileferry.agent.conversation import Conversation, confirmation
from fileferry.agent.tools import AgentTools, ToolOutcome

__all__ = ["HELP", "OfflinePlanner", "parse"]

HELP = ("I am the offline planner (no language model is configured), so I understand "
        "direct requests only:\n"
        "  send s3://bucket/prefix/ to acme:/inbound/   (also: transfer, copy; several "
        "sources; patterns such as s3://bucket/day/*.csv)\n"
        "  yes  (after a plan: send exactly that)   no  (drop it)\n"
        "  status of tr-…   cancel tr-…   list destinations")

_ID = r"(?P<id>tr-[A-Za-z0-9._-]{1,97}?)"
_END = r"\s*(?:,?\s*please)?\s*[.!?]*\s*$"
_SOURCES = r"(?P<sources>s3://\S+(?:(?:\s*,\s*|\s+and\s+|\s+)s3://\S+)*)"
_DEST = r"(?P<dest>[A-Za-z0-9][\w.-]*(?::\S*?)?)"
GRAMMAR: list[tuple[str, re.Pattern[str]]] = [(kind, re.compile(pattern, re.IGNORECASE)) for
                                              kind, pattern in (
    ("plan", r"^(?:please\s+)?(?:send|transfer|copy|deliver|upload|plan)\s+" + _SOURCES
     + r",?\s+to\s+" + _DEST + _END),
    ("status", r"^(?:what(?:'s|\s+is)\s+the\s+)?(?:status|progress|state)\s+(?:of\s+)?" + _ID
     + _END),
    ("status", r"^(?:check|show)\s+" + _ID + _END),
    ("cancel", r"^(?:please\s+)?(?:cancel|stop|abort)\s+(?:transfer\s+)?" + _ID + _END),
    ("destinations", r"^(?:(?:list|show)(?:\s+me)?(?:\s+(?:all|the))?|which|what)\s+"
     r"destinations(?:\s+are\s+there|\s+can\s+i\s+use)?" + _END),
    ("drop", r"^(?:no|nope|don'?t|never\s*mind|cancel|stop|abort)" + _END),
    ("help", r"^(?:help|\?|what\s+can\s+you\s+do)" + _END),
)]


def parse(text: str) -> tuple[str, dict[str, str]]:
    """(kind, fields) for a request: plan, status, cancel, destinations, confirm, drop,
    help; ``("unknown", {})`` for anything else."""
    if confirmation(text)[0]:
        return "confirm", {}
    for kind, pattern in GRAMMAR:
        match = pattern.match(text.strip())
        if match:
            return kind, {k: v for k, v in match.groupdict().items() if v is not None}
    return "unknown", {}


def _sources(text: str) -> list[str]:
    parts = re.split(r"\s*,\s*|\s+and\s+|\s+", text.strip())
    return [p.rstrip(",") for p in parts if p]


def _destination(text: str) -> str:
    return text if ":" in text else text + ":"


def _failed(outcome: ToolOutcome) -> str:
    lead = {"denied": "Not allowed", "refused": "Refused", "invalid": "I could not use that",
            "error": "That failed"}.get(outcome.outcome, "Note")
    return f"{lead}: {outcome.message}"


class OfflinePlanner(ChatAgent):
    """``ChatAgent`` without a model: the grammar above picks the tool."""

    kind = "offline"

    async def respond(self, conv: Conversation, tools: AgentTools, text: str) -> str:
        kind, fields = parse(text)
        if kind == "plan":
            return await self._plan(tools, _sources(fields["sources"]),
                                    _destination(fields["dest"]))
        if kind == "confirm":
            return await self._confirmed(conv, tools)
        if kind in ("status", "cancel"):
            tool = "get_transfer_status" if kind == "status" else "cancel_transfer"
            outcome = await tools.call(tool, {"transfer_id": fields["id"]})
            return outcome.message if outcome.ok else _failed(outcome)
        if kind == "destinations":
            outcome = await tools.call("list_destinations", {})
            found = outcome.data["destinations"]
            if not found:
                return "No destinations are configured (add them under destinations:)."
            return "Destinations:\n" + "\n".join(
                f"  {d['name']}: {d['protocol']}://{d['host']}{d['root']}" for d in found)
        if kind == "drop":
            if conv.proposed is None:
                return "There is no plan waiting; nothing was sent."
            dropped, conv.proposed = conv.proposed, None
            return f"Plan {dropped} dropped; nothing was sent."
        if kind == "help":
            return HELP
        return "Sorry, I cannot do that. " + HELP

    async def _plan(self, tools: AgentTools, sources: list[str], destination: str) -> str:
        outcome = await tools.call("plan_transfer", {"sources": sources,
                                                     "destination": destination})
        if not outcome.ok:
            return _failed(outcome)
        return ("Here is the plan; nothing has moved. Reply 'yes' to send exactly this, "
                "or 'no' to drop it.")

    async def _confirmed(self, conv: Conversation, tools: AgentTools) -> str:
        if conv.confirmed is None:
            return ("There is no plan waiting for your confirmation. Ask for a transfer "
                    "first, e.g. send s3://bucket/prefix/ to acme:/inbound/")
        plan_id = conv.confirmed
        tickets = await tools.call("create_servicenow_tickets", {"plan_id": plan_id})
        if not tickets.ok:
            return _failed(tickets)
        started = await tools.call("execute_transfer", {"plan_id": plan_id})
        if not started.ok:
            return _failed(started)
        found = tickets.data["tickets"]
        data = started.data
        lines = [f"Tickets: user {found['user']}, audit {found['audit']}.",
                 f"Transfer {data['transfer_id']}: {data['status']}"]
        if "files_delivered" in data:
            lines[-1] += f" ({data['files_delivered']} of {data['files_total']} file(s) " \
                         "delivered)"
        if data.get("error"):
            lines.append(f"Error: {data['error'].get('type')}: {data['error'].get('message')}")
        return "\n".join(lines)
