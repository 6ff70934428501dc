"""The FastAPI app of ``fileferry serve``: routes, errors, the dashboard, the lifespan.

On start the app opens the store, starts the worker pool and the store
poller, queues executions whose lease has lapsed (and transfers it recorded
but never started), and delivers pending ticket and notification work. On
stop it ends the event streams, cancels running executions (their checkpoints
stay; the next start resumes them) and closes the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING

from fastapi import FastAPI, Request, Response
from fastapi.staticfiles import StaticFiles

from fileferry import services
from fileferry.api.auth import Authenticator, BearerTokenAuthenticator, api_token
from fileferry.api.errors import install_error_handlers
from fileferry.api.events import EventBus, StorePoller
from fileferry.api.metrics import ApiMetrics
from fileferry.api.routes import approvals, chat, login, system, transfers
from fileferry.api.sso import CookieSigner, OidcAuthenticator, session_key
from fileferry.api.state import ServerState
from fileferry.api.workers import WorkerPool
from fileferry.config import Settings
from fileferry.endpoints.registry import close_idle_destinations
from fileferry.store import open_store
from fileferry.workflow.runner import _dead_local_owner  # the runner's own takeover rule

if TYPE_CHECKING:
    from fileferry.automation.scheduler import Scheduler

__all__ = ["ServerState", "create_app", "deliver_pending_work", "resume_lapsed"]

log = logging.getLogger(__name__)
STATIC = Path(__file__).parent / "static"
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
                               "frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
}


async def resume_lapsed(state: ServerState) -> list[str]:
    """Queue every unfinished execution whose lease has lapsed or whose holder on this
    machine is dead, and every transfer this API recorded that never started.
    Executions a live process holds are left to it (the poller shows them)."""
    store, now, queued = state.store, time.time(), []
    for execution_id in await store.unfinished_executions():
        holder = await store.lease_owner(execution_id, now)
        if holder is None or _dead_local_owner(holder):
            queued.append(execution_id.removeprefix("exec-"))
    cursor: str | None = None
    while True:
        page, cursor = await store.list_transfers(status="PENDING", limit=200, cursor=cursor)
        for record in page:
            if record.options.get("queued_by") == "api" and record.execution_id and \
                    await store.lease_owner(record.execution_id, now) is None:
                queued.append(record.transfer_id)
        if cursor is None:
            break
    for transfer_id in dict.fromkeys(queued):
        state.pool.submit(transfer_id)
    if queued:
        log.info("resuming %d transfer(s): %s", len(queued), ", ".join(queued))
    return queued


OUTBOX_INTERVAL = 30.0  # seconds between attempts at work queued during an outage


async def deliver_pending_work(settings: Settings, interval: float = OUTBOX_INTERVAL) -> None:
    """Deliver ticket and notification work queued during outages: at start, then
    every ``interval`` seconds while the server runs."""
    while True:
        try:
            pending = await services.deliver_pending(settings)
        except Exception:  # the outbox tries again later; a down ServiceNow must not stop us
            log.warning("delivering queued ticket/notification work failed", exc_info=True)
        else:
            if pending:
                log.info("%d piece(s) of ticket/notification work still queued", pending)
        await asyncio.sleep(interval)


@contextlib.asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    state: ServerState = app.state.ff
    state.pool.start()
    poller = StorePoller(state.bus, state.settings, state.store, lambda: state.pool.active)
    background = [asyncio.create_task(poller.run(), name="fileferry-store-poller"),
                  asyncio.create_task(deliver_pending_work(state.settings),
                                      name="fileferry-deliver-pending")]
    stop, scheduler = asyncio.Event(), _scheduler(state.settings)
    if scheduler is not None:  # routes with schedules or S3 events run here
        background.append(asyncio.create_task(scheduler.serve(stop), name="fileferry-routes"))
    await resume_lapsed(state)
    try:
        yield
    finally:
        stop.set()
        state.bus.close()
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)
        if scheduler is not None:
            await scheduler.close()
        await state.pool.stop()
        await close_idle_destinations()
        await state.store.close()


def _scheduler(settings: Settings) -> Scheduler | None:
    """The routes' triggers (cron schedules, S3 events or prefix polling), when any."""
    if not any(r.triggers.schedule or r.triggers.events for r in settings.routes.values()):
        return None
    from fileferry.automation.scheduler import Scheduler

    return Scheduler(settings)


def _default_authenticator(app: FastAPI, settings: Settings) -> Authenticator:
    """OIDC (bearer JWTs and the dashboard's cookie) with ``sso:``, else the API token."""
    if settings.sso is None:
        return BearerTokenAuthenticator(api_token(settings).value)
    app.state.signer = CookieSigner(session_key(settings))
    return OidcAuthenticator(settings.sso, app.state.signer)


def create_app(settings: Settings, authenticator: Authenticator | None = None) -> FastAPI:
    """The app for ``settings``. Without ``authenticator``: with ``sso:`` OIDC
    (:mod:`fileferry.api.sso`), else the bearer token of
    :func:`fileferry.api.auth.api_token` (which may generate the token file)."""
    app = FastAPI(title="FileFerry", version="0.1.0", lifespan=_lifespan,
                  openapi_url=None, docs_url=None, redoc_url=None,
                  description="Verified, audited hand-offs of S3 objects to SFTP/FTP(S) "
                  "partners. Every route but /healthz needs Authorization: Bearer <token>.")
    store = open_store(settings.store.url)
    bus, metrics = EventBus(), ApiMetrics()
    app.state.ff = ServerState(settings, store, bus, metrics,
                               WorkerPool(settings, store, bus, metrics, settings.api.workers))
    app.state.authenticator = authenticator or _default_authenticator(app, settings)
    install_error_handlers(app)
    app.include_router(system.router)
    app.include_router(transfers.router)
    app.include_router(approvals.router)
    app.include_router(approvals.listing)
    app.include_router(login.router)
    app.include_router(chat.router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.middleware("http")
    async def security_headers(request: Request,
                               call_next: Callable[[Request], Awaitable[Response]]
                               ) -> Response:
        response = await call_next(request)
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        if request.url.path.startswith("/api/"):
            response.headers.setdefault("Cache-Control", "no-store")
        return response

    return app

