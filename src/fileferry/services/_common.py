"""What the service modules share: the ports a transfer runs with, and how to close them.

``make_deps`` is public (re-exported by ``fileferry.services``: the Lambda runtime
and the agent build their ports with it); the rest is for the service modules only.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from fileferry.config import Settings
from fileferry.errors import RefusedError, all_error_classes
from fileferry.identity.secrets import DestinationSecrets
from fileferry.identity.sessions import DEFAULT_TTL, StoreSessions
from fileferry.integrations.notify import WebhookNotifier
from fileferry.integrations.outbox import Deliverer, OutboxTicketing
from fileferry.store import Store
from fileferry.transfer.progress import ProgressSubscriber
from fileferry.transfer.retry import Sleep
from fileferry.workflow.ports import LocalNotifier, LocalTicketing, Notifier, Ticketing
from fileferry.workflow.steps.deps import Deps

__all__ = ["REFUSALS", "close_deps", "deliverers", "execution_id_for", "make_deps"]

# The error names that end a transfer REFUSED (not FAILED) when nothing has moved yet.
REFUSALS = {cls.__name__ for cls in all_error_classes() if issubclass(cls, RefusedError)}


def make_deps(settings: Settings, store: Store,
              subscribers: Sequence[ProgressSubscriber] = (), sleep: Sleep | None = None,
              source: Any = None, clock: Callable[[], float] = time.time) -> Deps:
    """The local ports; later issues swap in ServiceNow, Teams/Slack, SSO, Secrets Manager."""
    notifier: Notifier = (WebhookNotifier(store, settings.notifications)
                          if settings.notifications.channels else LocalNotifier(store))
    ticketing: Ticketing = LocalTicketing(store)
    if settings.servicenow is not None:
        from fileferry.integrations.servicenow import ServiceNowTicketing

        ticketing = OutboxTicketing(ServiceNowTicketing(store, settings.servicenow), store)
    return Deps(settings=settings, store=store, ticketing=ticketing,
                notifier=notifier, sessions=_sessions(settings, store, clock),
                secrets=DestinationSecrets(settings), sleep=sleep, subscribers=list(subscribers),
                source=source, clock=clock)


def _sessions(settings: Settings, store: Store, clock: Callable[[], float]) -> StoreSessions:
    ttl = settings.sso.session_ttl_seconds if settings.sso is not None else DEFAULT_TTL
    return StoreSessions(store, ttl, clock)


def execution_id_for(transfer_id: str) -> str:
    """The embedded runner's execution id for a transfer (one execution per transfer)."""
    return f"exec-{transfer_id}"


async def close_deps(deps: Deps) -> None:
    """Integration clients that hold connections (ServiceNow) are closed with the store."""
    closer = getattr(deps.ticketing, "close", None)
    if closer is not None:
        await closer()


def deliverers(deps: Deps) -> dict[str, Deliverer]:
    """Which port does each kind of queued work (``op``) in the outbox."""
    out: dict[str, Deliverer] = {}
    if isinstance(deps.ticketing, OutboxTicketing):
        out["create"] = out["update"] = deps.ticketing
    if isinstance(deps.notifier, WebhookNotifier):
        out["notify"] = deps.notifier
    return out
