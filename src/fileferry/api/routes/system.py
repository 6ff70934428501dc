"""Health, metrics, the OpenAPI document, the destinations the form offers, the
stream of every transfer's events, and the dashboard page.

Only ``/healthz`` is open. The dashboard's page and its static files are the
empty shell (no data, no token); everything they show comes from the
authenticated routes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse, Response, StreamingResponse

from fileferry.api.auth import require_principal
from fileferry.api.events import event_stream
from fileferry.api.metrics import CONTENT_TYPE
from fileferry.api.schemas import DestinationPublic, DestinationsPublic, TransferEvent
from fileferry.api.state import State
from fileferry.identity.principal import Principal
from fileferry.identity.visibility import Viewer

__all__ = ["router"]

STATIC = Path(__file__).resolve().parents[1] / "static"
router = APIRouter()
authenticated = [Depends(require_principal)]
Caller = Annotated[Principal, Depends(require_principal)]


@router.get("/healthz", tags=["system"])
async def healthz(ff: State) -> dict[str, Any]:
    """Liveness, open to anyone: says nothing about transfers."""
    return {"status": "ok"}


@router.get("/metrics", tags=["system"], dependencies=authenticated,
            response_class=Response)
async def metrics(ff: State) -> Response:
    """Prometheus text format: bytes, files, durations, failures by error name."""
    return Response(ff.metrics.render(), media_type=CONTENT_TYPE)


@router.get("/openapi.json", tags=["system"], dependencies=authenticated,
            include_in_schema=False)
async def openapi(request: Request) -> dict[str, Any]:
    document: dict[str, Any] = request.app.openapi()
    return document


@router.get("/api/destinations", tags=["system"], dependencies=authenticated,
            response_model=DestinationsPublic)
async def destinations(ff: State) -> DestinationsPublic:
    """The configured destinations (name, protocol, host, root; never credentials)."""
    data = []
    for name, dest in sorted(ff.settings.destinations.items()):
        parsed = dest.parsed
        data.append(DestinationPublic(name=name, scheme=parsed.scheme, host=parsed.host,
                                      root=parsed.path))
    return DestinationsPublic(data=data)


@router.get("/api/events", tags=["transfers"], dependencies=authenticated,
            response_class=StreamingResponse,
            responses={200: {"content": {"text/event-stream": {}},
                             "description": "Server-Sent Events of every transfer"}})
async def all_events(ff: State, caller: Caller) -> StreamingResponse:
    """Server-Sent Events of every transfer the caller may see (this server's and other
    processes'): with ``sso:`` a non-operator gets their own transfers' events and
    those of transfers their approval groups decide (from the status event on that
    says PENDING_APPROVAL)."""
    viewer = Viewer(ff.settings.sso, ff.store, caller)

    async def snapshot() -> list[TransferEvent]:
        return []

    async def allow(event: TransferEvent) -> bool:
        view = event.transfer
        return await viewer.sees(view.transfer_id, view.requester,
                                 recheck=event.type == "status")

    return StreamingResponse(event_stream(ff.bus, None, snapshot,
                                          allow=None if viewer.sees_all else allow),
                             media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


@router.get("/", include_in_schema=False)
async def dashboard() -> FileResponse:
    return FileResponse(STATIC / "index.html", media_type="text/html")
