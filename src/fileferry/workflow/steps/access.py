"""The one way a step reaches a destination: under a live session, credentials, then connect.

``authorised_destination`` checks the transfer's session for fetching the
destination's credentials and for opening the connection. When that session
has expired (a later task, a retry, a resume after a crash, a reconnect) it
opens a new, audited session of its own for just that, and closes it as soon
as the connection is open: a long copy does not need the session once
connected. A session closed on purpose (logout, failure, cancel) is never
replaced: ``SessionExpired`` goes up to the workflow.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from fileferry.config import DestinationSettings
from fileferry.endpoints.base import Destination
from fileferry.endpoints.registry import open_destination
from fileferry.errors import SessionExpired
from fileferry.transfer.engine import destination_settings
from fileferry.transfer.retry import RetryPolicy
from fileferry.workflow.steps.deps import Deps

__all__ = ["authorised_destination"]

_USE = "credentials and connect"


async def _requester(deps: Deps, transfer_id: str) -> str:
    record = await deps.store.get_transfer(transfer_id)
    return record.requester if record is not None else ""


@contextlib.asynccontextmanager
async def authorised_destination(deps: Deps, transfer_id: str, name: str, *,
                                 session_id: str | None = None, purpose: str,
                                 requester: str | None = None
                                 ) -> AsyncIterator[tuple[DestinationSettings, Destination]]:
    """``(settings with credentials, connected destination)`` for ``name``.

    ``session_id`` None (or an expired one) opens a session for ``purpose``.
    Connecting is retried per the destination's retry settings.
    """
    own: str | None = None
    if session_id is not None:
        try:
            await deps.sessions.use(transfer_id, session_id, _USE)
        except SessionExpired as exc:
            if exc.closed:
                raise
            session_id, purpose = None, "reconnect"
    if session_id is None:
        who = requester if requester is not None else await _requester(deps, transfer_id)
        opened = await deps.sessions.open(transfer_id, who, name, reason=purpose)
        own = opened.session_id
        await deps.sessions.use(transfer_id, own, _USE)
    try:
        # a secret fetch blocks (boto3): off the event loop, where other files stream
        dsettings = await asyncio.to_thread(deps.secrets.destination, name)
        retry = RetryPolicy.for_destination(destination_settings(deps.settings, name),
                                            deps.sleep)
        async with open_destination(name, dsettings, deps.settings.transfer, retry) as dest:
            if own is not None:  # connected: the copy goes on without the session
                await deps.sessions.close(transfer_id, own)
                own = None
            yield dsettings, dest
    finally:
        if own is not None:
            await deps.sessions.close(transfer_id, own)
