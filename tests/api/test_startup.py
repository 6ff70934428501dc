"""On start the server resumes executions whose lease has lapsed: here, a CLI
transfer killed with SIGKILL half-way is finished by a server started afterwards."""

from __future__ import annotations

import asyncio
import hashlib
import os
import secrets
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

from fileferry.api.server import BackgroundServer
from fileferry.config import load_settings
from fileferry.sandbox.s3 import MotoServer
from fileferry.sandbox.servicenow import ServiceNowEmulator
from fileferry.store import open_store
from fileferry.store.ledger import Ledger
from tests.api.conftest import TOKEN, MiB, make_remote, wait_for, write_api_config
from tests.helpers import cli_command, cli_env, seed
from tests.servers.sshd import SshdServer
from tests.transfer.test_engine_sftp import tree


def _wait_for_partial(directory: Path, at_least: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(p.stat().st_size >= at_least for p in directory.rglob(".*.fftmp")):
            return
        time.sleep(0.05)
    raise AssertionError("the transfer never got going")


def test_the_server_resumes_a_killed_transfer(tmp_path: Path, moto: MotoServer,
                                              sshd: SshdServer, s3: Any, bucket: str,
                                              servicenow: ServiceNowEmulator) -> None:
    remote = make_remote(sshd)
    config = write_api_config(tmp_path, moto, sshd, remote, servicenow)
    body = secrets.token_bytes(3 * MiB)
    seed(s3, bucket, {"big.bin": body})
    proc = subprocess.Popen(cli_command("transfer", "--config", config, "--json",
                                        f"s3://{bucket}/big.bin", "slow:"),
                            env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        _wait_for_partial(remote, MiB)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=30)
    assert not (remote / "big.bin").exists()
    with BackgroundServer(load_settings(config)) as server, \
            httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {TOKEN}"},
                         timeout=30) as client:
        [running] = client.get("/api/transfers").json()["data"]
        done = wait_for(client, running["transfer_id"])
    assert done["status"] == "SUCCEEDED", done["error"]
    assert done["files"][0]["sha256"] == hashlib.sha256(body).hexdigest()
    assert tree(remote) == {"big.bin": body}, "one verified file, no leftovers"
    retried = [e for e in done["history"] if e["event"] == "entered"]
    assert retried, "the history shows the resumed execution"


def test_the_server_delivers_ticket_work_queued_during_an_outage(
        tmp_path: Path, moto: MotoServer, sshd: SshdServer, s3: Any, bucket: str) -> None:
    """A CLI transfer SUCCEEDED while ServiceNow was down (tickets "pending"); a server
    started once it is back delivers the queued work: exactly two tickets, resolved."""
    remote = make_remote(sshd)
    seed(s3, bucket, {"late.csv": b"a,b\n"})
    with ServiceNowEmulator() as snow:
        snow.add_group("DataOps")
        config = write_api_config(tmp_path, moto, sshd, remote, snow)
        data = yaml.safe_load(config.read_text(encoding="utf-8"))
        data["servicenow"].update(attempts=1, flush_timeout=0, breaker_cooldown=0)
        config.write_text(yaml.safe_dump(data), encoding="utf-8")
        snow.fail_next(10_000, 503)
        done = subprocess.run(cli_command("transfer", "--json", "--config", config,
                                          f"s3://{bucket}/late.csv", "t:"),
                              env=cli_env(), capture_output=True, text=True, timeout=120,
                              check=False)
        assert done.returncode == 0, done.stderr
        assert '"tickets_pending":true' in done.stdout and snow.records("incident") == []
        snow.clear_faults()
        with BackgroundServer(load_settings(config)):
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and not (
                    len(snow.records("incident")) == 2
                    and {r["state"] for r in snow.records("incident")} == {"6"}):
                time.sleep(0.1)
        incidents = snow.records("incident")
        assert len(incidents) == 2 and {r["state"] for r in incidents} == {"6"}


def test_the_server_runs_routes_on_their_triggers(tmp_path: Path, moto: MotoServer,
                                                  sshd: SshdServer, s3: Any, bucket: str,
                                                  servicenow: ServiceNowEmulator) -> None:
    """A route polling its prefix runs inside `fileferry serve`: what lands under the
    prefix is delivered once and recorded in the ledger."""
    remote = make_remote(sshd)
    seed(s3, bucket, {"out/a.csv": b"1,2\n", "out/b.csv": b"3,4\n"})
    config = write_api_config(tmp_path, moto, sshd, remote, servicenow)
    data = yaml.safe_load(config.read_text(encoding="utf-8"))
    data["routes"] = {"nightly": {
        "source": {"bucket": bucket, "prefix": "out/"}, "destination": "t:in",
        "triggers": {"s3_events": {"poll_interval": 3600}}}}
    config.write_text(yaml.safe_dump(data), encoding="utf-8")
    settings = load_settings(config)

    async def ledger() -> list[tuple[str, str]]:
        async with open_store(settings.store.url) as store:
            return sorted((e.key, e.state) for e in await Ledger(store).entries("nightly"))

    want = [("out/a.csv", "delivered"), ("out/b.csv", "delivered")]
    with BackgroundServer(settings):
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and asyncio.run(ledger()) != want:
            time.sleep(0.2)
    assert asyncio.run(ledger()) == want
    assert tree(remote) == {"in/a.csv": b"1,2\n", "in/b.csv": b"3,4\n"}
