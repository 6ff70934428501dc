"""The durable embedded runner: the ASL interpreter, checkpointed into the store, under a lease.

Every transition is checkpointed, every state entered/exited/retried/failed
goes to the execution's history, and each execution is held by a lease
(owner + heartbeat, taken with a conditional write), so ``fileferry resume``
never runs an execution that another live process still owns.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from typing import Any

from fileferry.errors import LeaseHeld
from fileferry.store import Store
from fileferry.workflow.asl import Checkpoint, ExecutionResult, StateMachine, execute
from fileferry.workflow.registry import (
    LOCAL_PREFIX,
    definition_text,
    invoke_step,
    local_substitutions,
)
from fileferry.workflow.steps.deps import Deps

__all__ = ["LEASE_TTL", "LeaseHeld", "StoreJournal", "load_machine", "run_execution"]

LEASE_TTL = 30.0


def owner_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def load_machine() -> StateMachine:
    return StateMachine.load(definition_text(), local_substitutions())


class StoreJournal:
    """Writes the history and checkpoints of one execution to the store."""

    def __init__(self, store: Store, execution_id: str,
                 resume: Checkpoint | None = None) -> None:
        self._store = store
        self._id = execution_id
        self._last: Checkpoint | None = resume

    async def _event(self, kind: str, path: str, state: str, when: float,
                     **extra: Any) -> None:
        await self._store.append_history(self._id, {"event": kind, "path": path,
                                                    "state": state, "at": when, **extra})

    async def entered(self, path: str, state: str, input: Any, when: float) -> None:
        await self._event("entered", path, state, when)

    async def exited(self, path: str, state: str, output: Any, when: float) -> None:
        await self._event("exited", path, state, when)

    async def retrying(self, path: str, state: str, error: str, cause: str, attempt: int,
                       delay: float, when: float) -> None:
        await self._event("retrying", path, state, when, error=error, cause=cause,
                          attempt=attempt, delay=round(delay, 3))

    async def failed(self, path: str, state: str, error: str, cause: str, when: float) -> None:
        await self._event("failed", path, state, when, error=error, cause=cause)

    async def checkpoint(self, cp: Checkpoint) -> None:
        self._last = cp
        await self._store.save_checkpoint(self._id, cp.to_dict())

    async def map_item_done(self, path: str, index: int, output: Any) -> None:
        if self._last is None:
            return
        self._last.map_items.setdefault(path, {})[index] = output
        await self._store.save_checkpoint(self._id, self._last.to_dict())


async def _heartbeat(store: Store, execution_id: str, owner: str, lost: asyncio.Event) -> None:
    while True:
        await asyncio.sleep(LEASE_TTL / 3)
        if not await store.renew_lease(execution_id, owner, time.time(), LEASE_TTL):
            lost.set()
            return


def _dead_local_owner(holder: str | None) -> bool:
    """A holder on this machine whose process is gone (killed) cannot heartbeat any more."""
    host, _, pid = (holder or "").rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


async def _take_lease(store: Store, execution_id: str, owner: str) -> None:
    if await store.acquire_lease(execution_id, owner, time.time(), LEASE_TTL):
        return
    holder = await store.lease_owner(execution_id, time.time())
    if _dead_local_owner(holder) and holder is not None:
        await store.release_lease(execution_id, holder)
        if await store.acquire_lease(execution_id, owner, time.time(), LEASE_TTL):
            return
    raise LeaseHeld(f"execution {execution_id} is running in {holder}; wait for it, or "
                    "resume it once that process is gone")


async def run_execution(deps: Deps, execution_id: str, input: dict[str, Any], *,
                        resume: bool = False,
                        cancel: asyncio.Event | None = None) -> ExecutionResult:
    """Run (or resume from its checkpoint) one execution of the transfer workflow."""
    store, owner = deps.store, owner_id()
    await _take_lease(store, execution_id, owner)
    cancel = cancel or asyncio.Event()
    beat = asyncio.create_task(_heartbeat(store, execution_id, owner, cancel))
    try:
        saved = await store.load_checkpoint(execution_id) if resume else None
        checkpoint = Checkpoint.from_dict(saved) if saved else None

        async def invoker(resource: str, payload: Any, context: dict[str, Any]) -> Any:
            return await invoke_step(resource.removeprefix(LOCAL_PREFIX), payload, deps)

        return await execute(load_machine(), input, invoker=invoker,
                             execution_id=execution_id, execution_name=input["transfer_id"],
                             journal=StoreJournal(store, execution_id, checkpoint),
                             resume=checkpoint, cancel=cancel, clock=deps.clock,
                             sleep=deps.sleep or asyncio.sleep)
    finally:
        beat.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await beat
        await store.release_lease(execution_id, owner)
