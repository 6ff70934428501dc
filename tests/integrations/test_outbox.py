"""ServiceNow outages never stop a transfer: ticket work waits in the store's outbox.

Against the Table API emulator over HTTP, moto's S3 and sshd: an outage at ticket time
(the transfer SUCCEEDS, the CLI reports "pending", `fileferry resume` delivers exactly
two tickets later) and an outage during the transfer that ends within the flush timeout.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fileferry.config import Settings, load_settings
from fileferry.integrations.outbox import NOT_CREATED, PENDING
from fileferry.models import FilePlan, FileResult
from fileferry.sandbox.servicenow import ServiceNowEmulator
from fileferry.services import deliver_pending, submit_transfer
from fileferry.store import open_store
from fileferry.transfer.engine import TransferRequest
from fileferry.transfer.progress import ProgressSubscriber
from tests.conftest import MakeConfig, sftp_destination
from tests.helpers import json_line, run_cli, seed, sha256_bytes
from tests.servers.sshd import SshdServer

BODY = b"id,amount\n1,100\n2,250\n"


@pytest.fixture
def snow() -> Iterator[ServiceNowEmulator]:
    with ServiceNowEmulator() as emulator:
        emulator.add_group("DataOps")
        yield emulator


def snow_section(snow: ServiceNowEmulator, flush_timeout: float) -> dict[str, Any]:
    # Few attempts and a short breaker cooldown keep an outage quick to notice and to leave.
    return {"instance_url": snow.url, "username": snow.username, "password": snow.password,
            "default_assignment_group": "DataOps", "attempts": 2, "timeout": 5,
            "breaker_threshold": 50, "breaker_cooldown": 0, "flush_timeout": flush_timeout}


async def audit_events(settings: Settings, transfer_id: str) -> list[str]:
    async with open_store(settings.store.url) as store:
        return [e.event for e in await store.audit(transfer_id)]


def test_outage_at_ticket_time_transfer_succeeds_and_resume_delivers_two_tickets(
        make_config: MakeConfig, sshd: SshdServer, remote_dir: Path, s3: Any, bucket: str,
        snow: ServiceNowEmulator, tmp_path: Path) -> None:
    seed(s3, bucket, {"pay.csv": BODY})
    config = make_config({"acme": sftp_destination(sshd, remote_dir)},
                         servicenow=snow_section(snow, flush_timeout=0.5))
    snow.fail_next(10_000, 503)  # ServiceNow is down from the start

    done = run_cli("transfer", "--json", "--config", config, "--user", "alice",
                   f"s3://{bucket}/pay.csv", "acme:", cwd=tmp_path)

    assert done.returncode == 0, done.stderr
    result = json_line(done.stdout)
    assert result["status"] == "SUCCEEDED"
    assert result["tickets"] == {"user": PENDING, "audit": PENDING}
    assert result["tickets_pending"] is True
    assert (remote_dir / "pay.csv").read_bytes() == BODY
    assert snow.records("incident") == []

    snow.clear_faults()  # ServiceNow is back
    again = run_cli("resume", "--json", "--config", config, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    delivered = json_line(again.stdout)
    assert delivered["transfer_id"] == result["transfer_id"]
    assert delivered["tickets_pending"] is False
    incidents = {r["number"]: r for r in snow.records("incident")}
    assert set(incidents) == {delivered["tickets"]["user"], delivered["tickets"]["audit"]}
    assert {r["state"] for r in incidents.values()} == {"6"}, "both resolved after delivery"
    user = incidents[delivered["tickets"]["user"]]
    notes = [j["value"] for j in snow.records("sys_journal_field")
             if j["element_id"] == user["sys_id"] and j["element"] == "work_notes"]
    assert len(notes) == 1 and sha256_bytes(BODY) in notes[0], "the update reached it once"

    settle = run_cli("resume", "--json", "--config", config, cwd=tmp_path)
    assert settle.returncode == 0 and settle.stdout == "", "nothing is left to deliver"
    assert len(snow.records("incident")) == 2, "running it again never makes a third ticket"
    events = asyncio.run(audit_events(load_settings(config), result["transfer_id"]))
    assert events.count("work_queued") == 2  # the create, then the update after it
    assert events.count("work_delivered") == 2
    assert events.count("tickets_created") == 1


class OutageOnFirstByte:
    """Takes ServiceNow down when the first file starts moving; a watcher brings it back
    once the emulator has refused ``failures`` requests (the ticket update's attempts)."""

    def __init__(self, snow: ServiceNowEmulator, failures: int) -> None:
        self.snow = snow
        self.failures = failures
        self.started = threading.Event()
        self.recovered = threading.Event()

    def file_started(self, plan: FilePlan) -> None:
        if self.started.is_set():
            return
        self.started.set()
        self.snow.fail_next(10_000, 503)
        threading.Thread(target=self._recover, daemon=True).start()

    def bytes_moved(self, plan: FilePlan, count: int) -> None:
        pass

    def file_retrying(self, plan: FilePlan, attempt: int, error: str) -> None:
        pass

    def file_resumed(self, plan: FilePlan, offset: int) -> None:
        pass

    def file_finished(self, result: FileResult) -> None:
        pass

    def _recover(self) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            refused = [r for r in self.snow.request_log if r.status == 503]
            if len(refused) >= self.failures:
                break
            time.sleep(0.02)
        self.snow.clear_faults()
        self.recovered.set()


async def test_outage_during_transfer_drains_within_the_flush_timeout(
        make_config: MakeConfig, sshd: SshdServer, remote_dir: Path, s3: Any, bucket: str,
        snow: ServiceNowEmulator) -> None:
    seed(s3, bucket, {"inv.csv": BODY})
    settings = load_settings(make_config({"acme": sftp_destination(sshd, remote_dir)},
                                         servicenow=snow_section(snow, flush_timeout=30)))
    outage = OutageOnFirstByte(snow, failures=2)
    subscribers: list[ProgressSubscriber] = [outage]
    request = TransferRequest(sources=[f"s3://{bucket}/inv.csv"], destination="acme:",
                              requester="alice")

    result = await submit_transfer(settings, request, subscribers)

    assert outage.recovered.is_set()
    assert result.status == "SUCCEEDED", result.error
    assert result.tickets and PENDING not in result.tickets.values()
    assert result.tickets_pending is False, "the flush delivered the queued update"
    incidents = {r["number"]: r for r in snow.records("incident")}
    assert set(incidents) == set(result.tickets.values())
    assert {r["state"] for r in incidents.values()} == {"6"}
    events = await audit_events(settings, result.transfer_id)
    assert events.count("work_queued") == 1
    assert events.count("work_delivered") == 1
    assert (remote_dir / "inv.csv").read_bytes() == BODY



async def queued_transfer(make_config: MakeConfig, sshd: SshdServer, remote_dir: Path,
                          s3: Any, bucket: str, snow: ServiceNowEmulator
                          ) -> tuple[Settings, str]:
    """A delivered transfer whose ticket work sits in the outbox (ServiceNow was down)."""
    seed(s3, bucket, {"q.csv": BODY})
    settings = load_settings(make_config({"acme": sftp_destination(sshd, remote_dir)},
                                         servicenow=snow_section(snow, flush_timeout=0)))
    snow.fail_next(10_000, 503)
    request = TransferRequest(sources=[f"s3://{bucket}/q.csv"], destination="acme:",
                              requester="alice")
    result = await submit_transfer(settings, request)
    assert result.status == "SUCCEEDED" and result.tickets_pending
    snow.clear_faults()
    return settings, result.transfer_id


async def test_work_another_process_is_delivering_is_left_alone(
        make_config: MakeConfig, sshd: SshdServer, remote_dir: Path, s3: Any, bucket: str,
        snow: ServiceNowEmulator) -> None:
    settings, transfer_id = await queued_transfer(make_config, sshd, remote_dir, s3, bucket,
                                                  snow)
    async with open_store(settings.store.url) as store:
        assert await store.acquire_lease(f"outbox:{transfer_id}", "other-host:1:outbox",
                                         time.time(), 60)
    assert await deliver_pending(settings) == 2, "both pieces of work are still pending"
    assert snow.records("incident") == []
    async with open_store(settings.store.url) as store:
        assert await store.release_lease(f"outbox:{transfer_id}", "other-host:1:outbox")
    assert await deliver_pending(settings) == 0
    assert len(snow.records("incident")) == 2


async def test_work_servicenow_refuses_for_good_is_recorded_not_retried(
        make_config: MakeConfig, sshd: SshdServer, remote_dir: Path, s3: Any, bucket: str,
        snow: ServiceNowEmulator) -> None:
    settings, transfer_id = await queued_transfer(make_config, sshd, remote_dir, s3, bucket,
                                                  snow)
    snow.fail_next(1, 400)  # a bad request is not an outage: retrying cannot help
    assert await deliver_pending(settings) == 0
    async with open_store(settings.store.url) as store:
        work = {e.key: e for e in await store.work(transfer_id)}
        record = await store.get_transfer(transfer_id)
        events = [e for e in await store.audit(transfer_id) if e.event == "work_failed"]
    assert work["create"].state == "failed" and "400" in (work["create"].last_error or "")
    assert work["update:SUCCEEDED"].state == "done"
    assert record is not None and record.tickets == {"user": NOT_CREATED, "audit": NOT_CREATED}
    assert [e.detail["error"] for e in events] == ["DestinationError"]
    assert await deliver_pending(settings) == 0 and snow.records("incident") == []
