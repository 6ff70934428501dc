"""The transfer workflow end to end on the embedded runner: moto's S3 -> sshd, store in SQLite."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import secrets
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from fileferry.config import Settings, load_settings
from fileferry.services import history, submit_transfer
from fileferry.store import open_store
from fileferry.transfer.engine import TransferRequest
from fileferry.workflow.runner import load_machine
from tests.conftest import MakeConfig, sftp_destination
from tests.helpers import cli_command, cli_env, json_line
from tests.servers.proxy import FaultProxy
from tests.servers.sshd import SshdServer
from tests.transfer.test_engine_sftp import seed, tree
from tests.transfer.test_resilience import through

SettingsFor = Callable[..., Settings]
MiB = 1024 * 1024


async def no_sleep(seconds: float) -> None:
    return None


async def run(settings: Settings, *sources: str, dest: str = "t:") -> Any:
    request = TransferRequest(sources=sources, destination=dest, requester="alice")
    return await submit_transfer(settings, request, sleep=no_sleep)


async def audit_events(settings: Settings, transfer_id: str) -> list[str]:
    store = open_store(settings.store.url)
    try:
        return [e.event for e in await store.audit(transfer_id)]
    finally:
        await store.close()


def test_the_definition_loads_with_local_resources() -> None:
    machine = load_machine()
    assert machine is not None


async def test_success_runs_every_state(settings_for: SettingsFor, sshd: SshdServer,
                                        remote_dir: Path, s3: Any, bucket: str) -> None:
    small = {f"d/s{i}.txt": f"small {i}\n".encode() for i in range(5)}
    big = secrets.token_bytes(2 * MiB)
    seed(s3, bucket, {**small, "d/big.bin": big})
    settings = settings_for({"t": sftp_destination(sshd, remote_dir)},
                            transfer={"small_file_threshold": MiB})
    result = await run(settings, f"s3://{bucket}/d/")
    assert result.status == "SUCCEEDED", result.error
    assert result.execution_id
    assert result.tickets is not None and set(result.tickets) == {"user", "audit"}
    assert tree(remote_dir) == {**{k[2:]: v for k, v in small.items()}, "big.bin": big}
    by_name = {f.destination.rsplit("/", 1)[1]: f for f in result.files}
    assert by_name["big.bin"].sha256 == hashlib.sha256(big).hexdigest()
    assert {f.verified_by for f in result.files} == {"server-md5"}
    events = await history(settings, result.transfer_id)
    entered = [e["state"] for e in events if e["event"] == "entered" and "/" not in e["path"]]
    assert entered == ["ValidateInput", "NeedsApproval", "AuthenticateSSO", "CreateTickets",
                       "TransferFiles", "VerifyDelivery", "PostDelivery", "UpdateServiceNow",
                       "NotifyUser",
                       "CleanupAndLogout", "TransferComplete"]
    inner = [e["state"] for e in events if e["event"] == "entered" and "/" in e["path"]]
    assert inner.count("TransferToFTP") == 2  # one batch of small files, one file
    audit = await audit_events(settings, result.transfer_id)
    assert audit.count("tickets_created") == audit.count("notified") == 1
    assert "session_closed" in audit


@pytest.mark.parametrize("case", ["missing-object", "host-key"])
async def test_failures_end_in_handle_error(settings_for: SettingsFor, sshd: SshdServer,
                                            remote_dir: Path, tmp_path: Path, s3: Any,
                                            bucket: str, case: str) -> None:
    seed(s3, bucket, {"k": b"1"})
    dest = sftp_destination(sshd, remote_dir)
    source = f"s3://{bucket}/k"
    if case == "missing-object":
        source, expected = f"s3://{bucket}/missing", "SourceNotFound"
    else:
        dest["known_hosts"] = str(tmp_path / "nothing-pinned")
        expected = "HostKeyUnknown"
    settings = settings_for({"t": dest})
    result = await run(settings, source)
    assert result.status == "REFUSED"
    assert result.error is not None and result.error["type"] == expected
    events = await history(settings, result.transfer_id)
    states = [e["state"] for e in events if e["event"] == "entered"]
    assert states[-4:] == ["HandleError", "SettleDelivered", "CleanupAfterError",
                          "TransferFailed"]
    failed = [e for e in events if e["event"] == "failed"]
    assert failed and failed[0]["state"] == "ValidateInput" and failed[0]["error"] == expected
    assert "failed" in await audit_events(settings, result.transfer_id)
    assert tree(remote_dir) == {}


def _wait_for_partial(directory: Path, at_least: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        parts = [p for p in directory.glob(".*.fftmp") if p.stat().st_size >= at_least]
        if parts:
            return
        time.sleep(0.05)
    raise AssertionError("the transfer never got going")


def test_sigkill_then_resume(make_config: MakeConfig, sshd: SshdServer, remote_dir: Path,
                                   tmp_path: Path, s3: Any, bucket: str) -> None:
    body = secrets.token_bytes(24 * MiB)
    seed(s3, bucket, {"big.bin": body})
    with FaultProxy(sshd.shell_port) as proxy:
        dest = through(sshd, proxy, remote_dir, tmp_path, bandwidth_limit=4 * MiB)
        config = make_config({"t": dest}, transfer={"default_chunk_size": MiB})
        proc = subprocess.Popen([*cli_command("transfer", "--config", str(config), "--json",
                                              f"s3://{bucket}/big.bin", "t:")],
                                cwd=tmp_path, env=cli_env(), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        try:
            _wait_for_partial(remote_dir, 6 * MiB)
        finally:
            os.kill(proc.pid, signal.SIGKILL)
            proc.communicate(timeout=30)
        assert not (remote_dir / "big.bin").exists()
        proxy.reset_counters()
        done = subprocess.run([*cli_command("resume", "--config", str(config), "--json")],
                              cwd=tmp_path, env=cli_env(), capture_output=True, text=True,
                              timeout=180, check=False)
        assert done.returncode == 0, done.stderr
        result = json_line(done.stdout)
        assert result["status"] == "SUCCEEDED"
        assert tree(remote_dir) == {"big.bin": body}, "one verified file, no leftovers"
        assert result["files"][0]["sha256"] == hashlib.sha256(body).hexdigest()
        assert proxy.bytes_up < len(body), "the resume did not start from zero"
    settings = load_settings(config)
    audit = asyncio.run(audit_events(settings, result["transfer_id"]))
    assert audit.count("tickets_created") == 1 and audit.count("notified") == 1
    assert json.loads(json.dumps(result))["execution_id"]


async def test_servicenow_tickets_through_the_workflow(settings_for: SettingsFor,
                                                       sshd: SshdServer, remote_dir: Path,
                                                       s3: Any, bucket: str) -> None:
    from fileferry.sandbox.servicenow import ServiceNowEmulator

    seed(s3, bucket, {"r.csv": b"a,b\n"})
    with ServiceNowEmulator() as snow:
        snow.add_group("DataOps")
        snow.add_user("alice", "Alice Example")
        settings = settings_for({"t": sftp_destination(sshd, remote_dir)}, servicenow={
            "instance_url": snow.url, "username": snow.username, "password": snow.password,
            "default_assignment_group": "DataOps"})
        result = await run(settings, f"s3://{bucket}/r.csv")
        assert result.status == "SUCCEEDED", result.error
        assert result.tickets is not None
        incidents = {r["number"]: r for r in snow.records("incident")}
        assert set(incidents) == {result.tickets["user"], result.tickets["audit"]}
        assert {r["state"] for r in incidents.values()} == {"6"}  # both resolved
        again = await run(settings, f"s3://{bucket}/r.csv", dest="t:again")
        assert again.status == "SUCCEEDED" and len(snow.records("incident")) == 4
