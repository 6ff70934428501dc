"""Side effects behind ports, with local implementations that record into the store.

Later issues replace ``LocalTicketing`` (ServiceNow) and ``LocalNotifier``
(Teams/Slack); sessions are ``identity.sessions.StoreSessions`` and secrets
``identity.secrets.DestinationSecrets``. Every operation is idempotent:
re-running a step after a crash returns what the first run recorded instead of doing it twice.
"""

from __future__ import annotations

import time
from typing import Any, Protocol

from fileferry.config import DestinationSettings
from fileferry.store import Store
from fileferry.workflow.models import SessionOut, Tickets

__all__ = ["LocalNotifier", "LocalTicketing", "Notifier", "Secrets",
           "Sessions", "Ticketing"]


class Ticketing(Protocol):
    async def create(self, transfer_id: str, facts: dict[str, Any]) -> Tickets: ...

    async def update(self, transfer_id: str, tickets: Tickets | None, outcome: str,
                     notes: dict[str, Any]) -> None: ...


class Notifier(Protocol):
    async def notify(self, transfer_id: str, requester: str, outcome: str,
                     text: str) -> None: ...


class Sessions(Protocol):
    """Short sessions of the requester's authority (``identity/sessions.py``)."""

    async def open(self, transfer_id: str, requester: str, destination: str, *,
                   reason: str = "workflow") -> SessionOut: ...

    async def use(self, transfer_id: str, session_id: str, purpose: str) -> None:
        """Raise SessionExpired unless the session is live (``closed`` set if logged out)."""

    async def close(self, transfer_id: str, session_id: str | None) -> None: ...


class Secrets(Protocol):
    def destination(self, name: str) -> DestinationSettings:
        """The destination's settings with its credentials filled in."""

    def reference(self, name: str) -> str:
        """Where the credentials live (``secretsmanager:ARN``, ``env:VAR`` ...), never them."""


class LocalTicketing:
    """Ticket events recorded in the store's audit trail, once per transfer and outcome."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def create(self, transfer_id: str, facts: dict[str, Any]) -> Tickets:
        tickets = {"user": f"LOCAL-USR-{transfer_id[-8:]}",
                   "audit": f"LOCAL-AUD-{transfer_id[-8:]}"}
        first, stored = await self._store.record_once("tickets", transfer_id, tickets)
        if first:
            await self._store.append_audit(transfer_id, "tickets_created",
                                           {**stored, **facts}, time.time())
        return Tickets.model_validate(stored)

    async def update(self, transfer_id: str, tickets: Tickets | None, outcome: str,
                     notes: dict[str, Any]) -> None:
        first, _ = await self._store.record_once("ticket_update", f"{transfer_id}:{outcome}",
                                                 {"outcome": outcome})
        if first:
            detail = {"tickets": tickets.model_dump() if tickets else None, "outcome": outcome,
                      **notes}
            await self._store.append_audit(transfer_id, "tickets_updated", detail, time.time())


class LocalNotifier:
    """Messages recorded in the store, once per transfer and outcome."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def notify(self, transfer_id: str, requester: str, outcome: str, text: str) -> None:
        first, _ = await self._store.record_once("notification", f"{transfer_id}:{outcome}",
                                                 {"requester": requester, "text": text})
        if first:
            await self._store.append_audit(transfer_id, "notified",
                                           {"requester": requester, "outcome": outcome,
                                            "text": text}, time.time())
