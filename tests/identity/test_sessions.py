"""The 10-second transfer session, with an injected clock: expiry, logout, reconnects."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from fileferry.config import Settings
from fileferry.errors import SessionExpired
from fileferry.identity.sessions import StoreSessions
from fileferry.services import execution_id_for, make_deps, transfer_result
from fileferry.store import Store, open_store
from fileferry.workflow.models import ExecutionInput, Tickets
from fileferry.workflow.ports import LocalTicketing
from fileferry.workflow.runner import run_execution
from fileferry.workflow.steps.validate import ensure_transfer
from tests.conftest import sftp_destination
from tests.helpers import seed
from tests.servers.sshd import SshdServer


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def no_sleep(seconds: float) -> None:
    return None


async def events(store: Store, transfer_id: str) -> list[tuple[str, dict[str, Any]]]:
    return [(e.event, e.detail) for e in await store.audit(transfer_id)]


async def test_a_session_lives_ten_seconds_and_ends_at_logout() -> None:
    clock = Clock()
    async with open_store("sqlite:///:memory:") as store:
        sessions = StoreSessions(store, clock=clock)
        session = await sessions.open("tr-1", "alice", "acme")
        assert session.expires_at == clock.now + 10
        clock.now += 9.9
        await sessions.use("tr-1", session.session_id, "connect")
        clock.now += 0.1
        with pytest.raises(SessionExpired, match="expired") as info:
            await sessions.use("tr-1", session.session_id, "connect")
        assert not info.value.closed
        with pytest.raises(SessionExpired, match="does not belong"):
            await sessions.use("tr-2", session.session_id, "connect")
        fresh = await sessions.open("tr-1", "alice", "acme", reason="reconnect")
        await sessions.close("tr-1", fresh.session_id)
        await sessions.close("tr-1", fresh.session_id)  # twice: nothing more happens
        with pytest.raises(SessionExpired, match="closed") as info:
            await sessions.use("tr-1", fresh.session_id, "connect")
        assert info.value.closed
        kinds = [kind for kind, _ in await events(store, "tr-1")]
    assert kinds == ["session_opened", "session_used", "session_expired", "session_opened",
                     "session_closed", "session_refused"]


class SlowTicketing(LocalTicketing):
    """CreateTickets (between AuthenticateSSO and the transfer) takes 11 seconds."""

    def __init__(self, store: Store, clock: Clock) -> None:
        super().__init__(store)
        self._clock = clock

    async def create(self, transfer_id: str, facts: dict[str, Any]) -> Tickets:
        self._clock.now += 11
        return await super().create(transfer_id, facts)


async def test_a_transfer_task_after_expiry_opens_its_own_audited_session(
        settings_for: Callable[..., Settings], sshd: SshdServer, remote_dir: Path, s3: Any,
        bucket: str) -> None:
    seed(s3, bucket, {"k.txt": b"payload\n"})
    settings = settings_for({"t": sftp_destination(sshd, remote_dir)})
    clock = Clock()
    store = open_store(settings.store.url)
    deps = make_deps(settings, store, sleep=no_sleep, clock=clock)
    deps.ticketing = SlowTicketing(store, clock)
    payload = ExecutionInput(transfer_id="tr-slow-" + bucket, requester="alice",
                             sources=[f"s3://{bucket}/k.txt"], destination="t:")
    try:
        await ensure_transfer(payload, deps, execution_id_for(payload.transfer_id))
        execution = await run_execution(deps, execution_id_for(payload.transfer_id),
                                        payload.model_dump())
        result = await transfer_result(store, payload.transfer_id, execution)
        trail = await events(store, payload.transfer_id)
    finally:
        await store.close()
    assert result.status == "SUCCEEDED", result.error
    assert (remote_dir / "k.txt").read_bytes() == b"payload\n"
    opened = [d for kind, d in trail if kind == "session_opened"]
    assert [d["reason"] for d in opened] == ["validate", "workflow", "reconnect", "reconnect"]
    workflow = opened[1]["session_id"]
    expired = [d for kind, d in trail if kind == "session_expired"]
    assert [d["session_id"] for d in expired] == [workflow, workflow]  # transfer, verify
    closed = {d["session_id"] for kind, d in trail if kind == "session_closed"}
    assert closed == {d["session_id"] for d in opened}, "every session ends"
    assert all(d["requester"] == "alice" for d in opened)
    assert not any("token" in str(d).lower() for _, d in trail)
