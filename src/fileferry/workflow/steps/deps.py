"""What steps need from the outside world, passed in (never imported by a step)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from fileferry.config import Settings
from fileferry.endpoints.base import Source
from fileferry.endpoints.s3 import S3Source
from fileferry.store import Store
from fileferry.transfer.progress import ProgressSubscriber
from fileferry.transfer.retry import Sleep
from fileferry.transfer.throttle import ByteBudget
from fileferry.workflow.ports import Notifier, Secrets, Sessions, Ticketing

__all__ = ["Deps"]


@dataclass
class Deps:
    settings: Settings
    store: Store
    ticketing: Ticketing
    notifier: Notifier
    sessions: Sessions
    secrets: Secrets
    clock: Callable[[], float] = time.time
    sleep: Sleep | None = None
    subscribers: list[ProgressSubscriber] = field(default_factory=list)
    source: Source | None = None
    out_of_time: Callable[[], bool] | None = None
    """A time budget (Lambda: remaining time minus a margin); None: unlimited."""

    def s3(self) -> Source:
        if self.source is None:
            transfer = self.settings.transfer
            self.source = S3Source(self.settings.s3, transfer.default_chunk_size,
                                   max_connections=4 * transfer.max_parallel_threads,
                                   budget=ByteBudget(transfer.memory_budget))
        return self.source
