"""The short transfer session: ``sso.session_ttl_seconds`` (10 by default) of the user's authority.

A session is bound to one user, one transfer and one destination. While it
lives it gates what needs the user's authority: fetching the destination's
credentials and opening connections (``workflow/steps/access.py``). Once a
connection is open the copy goes on without it. ``CleanupAndLogout`` and every
failure path close it; a session used after it expired, or after it was closed,
raises ``SessionExpired``.

Everything is recorded in the store (``session`` and ``session_closed``
records, written once) and in the transfer's audit trail: ``session_opened``,
``session_used``, ``session_expired``, ``session_refused`` (used after close)
and ``session_closed``. No token or credential is ever part of a session.
Time comes from the injected clock, so expiry is tested without sleeping.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable

from fileferry.errors import SessionExpired
from fileferry.store import Store
from fileferry.workflow.models import SessionOut

__all__ = ["DEFAULT_TTL", "StoreSessions"]

DEFAULT_TTL = 10.0


class StoreSessions:
    """The workflow's ``Sessions`` port, kept in the state store."""

    def __init__(self, store: Store, ttl: float = DEFAULT_TTL,
                 clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self.ttl = ttl
        self._clock = clock

    async def open(self, transfer_id: str, requester: str, destination: str, *,
                   reason: str = "workflow") -> SessionOut:
        """A new session of ``ttl`` seconds from now; ``reason`` says who needed it."""
        now = self._clock()
        session_id = "ses-" + secrets.token_hex(8)
        record = {"transfer_id": transfer_id, "requester": requester,
                  "destination": destination, "opened_at": now, "expires_at": now + self.ttl,
                  "reason": reason}
        await self._store.record_once("session", session_id, record)
        await self._store.append_audit(transfer_id, "session_opened",
                                       {"session_id": session_id, **record}, now)
        return SessionOut(session_id=session_id, expires_at=now + self.ttl)

    async def use(self, transfer_id: str, session_id: str, purpose: str) -> None:
        """Check the session is live for ``purpose`` (audited either way).

        Raises SessionExpired when the session is unknown, belongs to another
        transfer, was closed (``closed=True``), or ``now >= expires_at``.
        """
        now = self._clock()
        record = await self._store.recorded("session", session_id)
        if record is None or record["transfer_id"] != transfer_id:
            raise SessionExpired(f"session {session_id} does not belong to {transfer_id}",
                                 closed=True)
        detail = {"session_id": session_id, "purpose": purpose}
        if await self._store.recorded("session_closed", session_id) is not None:
            await self._store.append_audit(transfer_id, "session_refused", detail, now)
            raise SessionExpired(f"session {session_id} was closed (logout); it cannot be used "
                                 f"for {purpose}", closed=True)
        expires_at = float(record["expires_at"])
        if now >= expires_at:
            await self._store.append_audit(transfer_id, "session_expired",
                                           {**detail, "expired_at": expires_at}, now)
            raise SessionExpired(f"session {session_id} expired {now - expires_at:.1f} s ago "
                                 f"(sessions last {self.ttl:g} s); {purpose} needs a new one")
        await self._store.append_audit(transfer_id, "session_used", detail, now)

    async def close(self, transfer_id: str, session_id: str | None) -> None:
        """End the session now; closing twice (or None) does nothing."""
        if session_id is None:
            return
        now = self._clock()
        first, _ = await self._store.record_once("session_closed", session_id, {"at": now})
        if first:
            await self._store.append_audit(transfer_id, "session_closed",
                                           {"session_id": session_id}, now)
