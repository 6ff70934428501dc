"""Side effects behind ports, with local implementations that record into the store.

Later issues replace ``LocalTicketing`` (ServiceNow), ``LocalNotifier``
(Teams/Slack), ``LocalSessions`` (SSO) and ``ConfigSecrets`` (Secrets
Manager). Every operation is idempotent: re-running a step after a crash
returns what the first run recorded instead of doing it twice.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from typing import Any, Protocol

from fileferry.config import DestinationSettings, Settings
from fileferry.store import Store
from fileferry.transfer.engine import destination_settings
from fileferry.workflow.models import SessionOut, Tickets

__all__ = ["ConfigSecrets", "LocalNotifier", "LocalSessions", "LocalTicketing", "Notifier",
           "Secrets", "Sessions", "Ticketing"]

SESSION_SECONDS = 10.0


class Ticketing(Protocol):
    async def create(self, transfer_id: str, facts: dict[str, Any]) -> Tickets: ...

    async def update(self, transfer_id: str, tickets: Tickets | None, outcome: str,
                     notes: dict[str, Any]) -> None: ...


class Notifier(Protocol):
    async def notify(self, transfer_id: str, requester: str, outcome: str,
                     text: str) -> None: ...


class Sessions(Protocol):
    async def open(self, transfer_id: str, requester: str, destination: str) -> SessionOut: ...

    async def close(self, transfer_id: str, session_id: str | None) -> None: ...


class Secrets(Protocol):
    def destination(self, name: str) -> DestinationSettings: ...


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


class LocalSessions:
    """A short session per transfer (10 s by default); the SSO issue makes it real."""

    def __init__(self, store: Store, clock: Callable[[], float] = time.time,
                 seconds: float = SESSION_SECONDS) -> None:
        self._store = store
        self._clock = clock
        self._seconds = seconds

    async def open(self, transfer_id: str, requester: str, destination: str) -> SessionOut:
        now = self._clock()
        session = SessionOut(session_id="ses-" + secrets.token_hex(8),
                             expires_at=now + self._seconds,
                             secret_ref=f"config:destinations.{destination}")
        await self._store.append_audit(transfer_id, "session_opened",
                                       {"session_id": session.session_id,
                                        "requester": requester,
                                        "expires_at": session.expires_at}, now)
        return session

    async def close(self, transfer_id: str, session_id: str | None) -> None:
        if session_id is None:
            return
        first, _ = await self._store.record_once("session_closed", session_id, {})
        if first:
            await self._store.append_audit(transfer_id, "session_closed",
                                           {"session_id": session_id}, self._clock())


class ConfigSecrets:
    """Destination settings (credentials included) from the configuration file."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    def destination(self, name: str) -> DestinationSettings:
        return destination_settings(self._settings, name)
