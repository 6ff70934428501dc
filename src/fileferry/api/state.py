"""What the routes share, kept on ``app.state.ff``; ``server_state`` is the dependency."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from fileferry.api.events import EventBus
from fileferry.api.metrics import ApiMetrics
from fileferry.api.workers import WorkerPool
from fileferry.config import Settings
from fileferry.store import Store

__all__ = ["ServerState", "State", "server_state"]


@dataclass
class ServerState:
    settings: Settings
    store: Store
    bus: EventBus
    metrics: ApiMetrics
    pool: WorkerPool


def server_state(request: Request) -> ServerState:
    state: ServerState = request.app.state.ff
    return state


State = Annotated[ServerState, Depends(server_state)]
