"""``ServiceNowTicketing``: the ``Ticketing`` port over the Table API.

Two tickets per transfer, each keyed by a correlation id derived from the transfer
(``fileferry:<transfer_id>:user`` / ``:audit``) so a re-run, a crash or an unknown POST
outcome never makes a second one:

* the **user** ticket (``user_ticket_urgency``, caller = the requester's ``sys_user``
  when one exists, the default assignment group) is resolved with the delivered files
  in its work notes on success, and left open for the group on failure;
* the **audit** ticket (``audit_ticket_urgency``, the same facts plus the policy that
  allowed the transfer) is resolved, or closed, with a close code either way.

Each ticket's sys_id is recorded in the store (``record_once("servicenow_ticket", cid)``)
as soon as it exists. Work notes carry a marker ``[ff:<transfer_id>:<outcome>]`` so a
repeated update does not add them twice; state changes are skipped when already made.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from jinja2 import TemplateError

from fileferry.errors import ConfigError
from fileferry.integrations.notify import human_duration, human_size
from fileferry.integrations.servicenow.client import ServiceNowClient, Sleep
from fileferry.integrations.servicenow.settings import ServiceNowSettings, jinja_env
from fileferry.store import Store
from fileferry.workflow.models import Tickets

__all__ = ["DEFAULT_POLICY", "ServiceNowTicketing", "correlation_id"]

log = logging.getLogger(__name__)

DEFAULT_POLICY = "local: no policy engine yet"
ROLES = ("user", "audit")
_ENV = jinja_env()

# per table: (state when resolved, state when closed, terminal states, caller field)
_STATES: dict[str, tuple[str, str, frozenset[str], str]] = {
    "incident": ("6", "7", frozenset({"6", "7", "8"}), "caller_id"),
    "change_request": ("3", "3", frozenset({"3", "4"}), "requested_by"),
}


def correlation_id(transfer_id: str, role: str) -> str:
    return f"fileferry:{transfer_id}:{role}"


def _render(template: str, context: Mapping[str, Any], what: str) -> str:
    try:
        return _ENV.from_string(template).render(dict(context)).strip()
    except TemplateError as exc:
        raise ConfigError(f"servicenow.{what}: {exc}") from exc


class ServiceNowTicketing:
    """Dual tickets in ServiceNow, idempotent per transfer and outcome."""

    def __init__(self, store: Store, settings: ServiceNowSettings, *,
                 client: ServiceNowClient | None = None, sleep: Sleep = asyncio.sleep,
                 clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self.settings = settings
        self._owns_client = client is None
        self.client = client or ServiceNowClient(settings, sleep=sleep, clock=clock)
        self._clock = clock
        self._group: tuple[str | None] | None = None  # cached lookup

    async def close(self) -> None:
        if self._owns_client:
            await self.client.close()

    async def __aenter__(self) -> ServiceNowTicketing:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- the store -------------------------------------------------------------------------

    async def _recorded(self, scope: str, key: str) -> dict[str, Any] | None:
        return await self._store.recorded(scope, key)

    # -- lookups ---------------------------------------------------------------------------

    async def _user_sys_id(self, user_name: str) -> str | None:
        """The requester's sys_user, or None (a missing user must not fail creation)."""
        if not user_name or "^" in user_name:
            return None
        rows = await self.client.find_exact("sys_user", "user_name", user_name, ["sys_id"])
        if not rows:
            log.info("ServiceNow: no sys_user %r; the ticket gets no caller", user_name)
            return None
        return str(rows[0]["sys_id"])

    async def _group_sys_id(self) -> str | None:
        name = self.settings.default_assignment_group
        if not name:
            return None
        if self._group is None:
            rows = await self.client.find_exact("sys_user_group", "name", name, ["sys_id"])
            if not rows:
                log.warning("ServiceNow: no sys_user_group %r; tickets stay unassigned", name)
            self._group = (str(rows[0]["sys_id"]) if rows else None,)
        return self._group[0]

    async def _ref(self, transfer_id: str, role: str) -> tuple[str, str] | None:
        """(sys_id, number) of a ticket: from the store, else looked up; None if none."""
        cid = correlation_id(transfer_id, role)
        stored = await self._recorded("servicenow_ticket", cid)
        if stored is not None:
            return str(stored["sys_id"]), str(stored["number"])
        rows = await self.client.find_exact(self.settings.table, "correlation_id", cid,
                                            ["sys_id", "number"])
        return (str(rows[0]["sys_id"]), str(rows[0]["number"])) if rows else None

    # -- create ----------------------------------------------------------------------------

    def context(self, transfer_id: str, facts: Mapping[str, Any], role: str) -> dict[str, Any]:
        """What the short description / description templates see."""
        sources = facts.get("sources") or []
        return {**facts, "transfer_id": transfer_id, "role": role,
                "requester": str(facts.get("requester", "")),
                "destination": str(facts.get("destination", "")),
                "sources": [str(s) for s in sources],
                "files_total": int(facts.get("files_total", len(sources)) or 0),
                "bytes_total": int(facts.get("bytes_total", 0) or 0),
                "policy": str(facts.get("policy", DEFAULT_POLICY)),
                "approver": str(facts.get("approver") or "")}

    async def create(self, transfer_id: str, facts: dict[str, Any]) -> Tickets:
        done = await self._recorded("tickets", transfer_id)
        if done is not None:
            return Tickets.model_validate(done)
        s = self.settings
        caller_field = _STATES[s.table][3]
        caller = await self._user_sys_id(str(facts.get("requester", "")))
        group = await self._group_sys_id()
        numbers: dict[str, str] = {}
        sys_ids: dict[str, str] = {}
        for role in ROLES:
            cid = correlation_id(transfer_id, role)
            stored = await self._recorded("servicenow_ticket", cid)
            if stored is None:
                ctx = self.context(transfer_id, facts, role)
                fields: dict[str, Any] = {
                    "short_description": _render(s.short_description_template, ctx,
                                                 "short_description_template")[:160],
                    "description": _render(s.description_template, ctx,
                                           "description_template"),
                    "urgency": str(s.user_ticket_urgency if role == "user"
                                   else s.audit_ticket_urgency),
                    "impact": str(s.impact),
                    "correlation_display": "FileFerry",
                }
                if caller:
                    fields[caller_field] = caller
                if group:
                    fields["assignment_group"] = group
                sys_id, number = await self.client.ensure_ticket(s.table, cid, fields)
                _, stored = await self._store.record_once(
                    "servicenow_ticket", cid,
                    {"table": s.table, "sys_id": sys_id, "number": number})
            numbers[role], sys_ids[role] = str(stored["number"]), str(stored["sys_id"])
        first, kept = await self._store.record_once("tickets", transfer_id, numbers)
        if first:
            await self._store.append_audit(
                transfer_id, "tickets_created",
                {**kept, **facts, "system": "servicenow", "table": s.table,
                 "sys_ids": sys_ids}, self._clock())
        return Tickets.model_validate(kept)

    # -- update ----------------------------------------------------------------------------

    def _work_note(self, transfer_id: str, outcome: str, notes: Mapping[str, Any]) -> str:
        marker = f"[ff:{transfer_id}:{outcome}]"
        if outcome == "SUCCEEDED":
            files = list(notes.get("files") or [])
            total = sum(int(f.get("size") or 0) for f in files)
            lines = [f"{marker} FileFerry delivered {len(files)} file(s) "
                     f"({human_size(total)}), each verified:"]
            for f in files:
                size = int(f.get("size") or 0)
                lines.append(f"- {f.get('destination')}: {human_size(size)} ({size} bytes), "
                             f"sha256 {f.get('sha256') or '-'}, verified by "
                             f"{f.get('verified_by') or '-'}")
            if notes.get("duration") is not None:
                lines.append(f"Duration: {human_duration(float(notes['duration']))}")
            if notes.get("execution_id"):
                lines.append(f"Execution: {notes['execution_id']}")
            return "\n".join(lines)
        return f"{marker} FileFerry transfer {transfer_id} {outcome.lower()}: " \
               f"{self._error_text(notes)}"

    @staticmethod
    def _error_text(notes: Mapping[str, Any]) -> str:
        if notes.get("error") or notes.get("cause"):
            return ": ".join(str(notes[k]) for k in ("error", "cause") if notes.get(k))
        if notes.get("by"):
            return f"cancelled by {notes['by']}"
        return "no detail given"

    def _close_notes(self, transfer_id: str, outcome: str, notes: Mapping[str, Any]) -> str:
        files = list(notes.get("files") or [])
        ctx = {**notes, "transfer_id": transfer_id, "outcome": outcome, "files": files,
               "bytes_total": sum(int(f.get("size") or 0) for f in files),
               "error": "" if outcome == "SUCCEEDED" else self._error_text(notes),
               "duration": notes.get("duration"),
               "execution_id": notes.get("execution_id")}
        return _render(self.settings.close_notes_template, ctx, "close_notes_template") \
            or f"FileFerry transfer {transfer_id}: {outcome.lower()}"

    async def _apply(self, sys_id: str, note: str, marker: str,
                     close: tuple[str, str] | None = None, *, closed: bool = False,
                     reassign: bool = False) -> None:
        """Add ``note`` (unless its marker is there already) and, with ``close`` =
        (code, notes), resolve the ticket (then close it when ``closed``) unless it is
        already final, in as few PATCHes as the state model allows."""
        s = self.settings
        resolved, closed_state, final, _ = _STATES[s.table]
        current = await self.client.get(s.table, sys_id,
                                        ["state", "work_notes", "assignment_group"],
                                        display_value="all")

        def part(name: str, which: str) -> str:
            value = current.get(name, "")
            return str(value.get(which, "")) if isinstance(value, dict) else str(value)

        body: dict[str, Any] = {}
        if marker not in part("work_notes", "display_value"):
            body["work_notes"] = note
        if reassign and not part("assignment_group", "value"):
            group = await self._group_sys_id()
            if group:
                body["assignment_group"] = group
        state = part("state", "value")
        if close is not None and state not in final:
            # close_code and close_notes go with the state change (the data policy)
            body.update(state=resolved, close_code=close[0], close_notes=close[1])
            state = resolved
        if body:
            await self.client.patch(s.table, sys_id, body)
        if close is not None and closed and state == resolved != closed_state:
            await self.client.patch(s.table, sys_id, {"state": closed_state})

    async def update(self, transfer_id: str, tickets: Tickets | None, outcome: str,
                     notes: dict[str, Any]) -> None:
        key = f"{transfer_id}:{outcome}"
        if await self._recorded("ticket_update", key) is not None:
            return
        s = self.settings
        marker = f"[ff:{transfer_id}:{outcome}]"
        note = self._work_note(transfer_id, outcome, notes)
        close_notes = self._close_notes(transfer_id, outcome, notes)
        refs = {role: await self._ref(transfer_id, role) for role in ROLES}
        closing = s.audit_close_state == "closed"
        user, audit = refs["user"], refs["audit"]
        if outcome == "SUCCEEDED":
            if user:  # resolved, never closed: the caller may still reopen it
                await self._apply(user[0], note, marker, (s.success_close_code, close_notes))
            if audit:
                await self._apply(audit[0], note, marker, (s.success_close_code, close_notes),
                                  closed=closing)
        else:
            if user:  # left open for the assignment group
                await self._apply(user[0], note, marker, reassign=True)
            if audit:
                await self._apply(audit[0], note, marker, (s.failed_close_code, close_notes),
                                  closed=closing)
        first, _ = await self._store.record_once("ticket_update", key, {"outcome": outcome})
        if first:
            detail = {"tickets": tickets.model_dump() if tickets else None,
                      "outcome": outcome, "system": "servicenow",
                      "found": {role: ref[1] if ref else None for role, ref in refs.items()},
                      **notes}
            await self._store.append_audit(transfer_id, "tickets_updated", detail,
                                           self._clock())
