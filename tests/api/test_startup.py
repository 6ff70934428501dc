"""On start the server resumes executions whose lease has lapsed: here, a CLI
transfer killed with SIGKILL half-way is finished by a server started afterwards."""

from __future__ import annotations

import hashlib
import os
import secrets
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from fileferry.api.server import BackgroundServer
from fileferry.config import load_settings
from fileferry.sandbox.s3 import MotoServer
from fileferry.sandbox.servicenow import ServiceNowEmulator
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


def test_the_outbox_hook_is_called_at_startup(tmp_path: Path, moto: MotoServer,
                                              sshd: SshdServer,
                                              servicenow: ServiceNowEmulator,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """The durable outbox (services.deliver_pending) is built on main; the server calls
    whatever is there at startup."""
    from fileferry import services

    called: list[str] = []

    async def deliver_pending(settings: Any) -> int:
        called.append(settings.store.url)
        return 0

    monkeypatch.setattr(services, "deliver_pending", deliver_pending, raising=False)
    config = write_api_config(tmp_path, moto, sshd, make_remote(sshd), servicenow)
    with BackgroundServer(load_settings(config)):
        deadline = time.monotonic() + 10
        while not called and time.monotonic() < deadline:
            time.sleep(0.05)
    assert called == [load_settings(config).store.url]
