"""The workflow from the command line: history, and cancel from another process."""

from __future__ import annotations

import asyncio
import secrets
import subprocess
import time
from pathlib import Path
from typing import Any

from fileferry.config import load_settings
from fileferry.store import open_store
from tests.conftest import MakeConfig, sftp_destination
from tests.helpers import cli_command, cli_env, json_line, run_cli
from tests.servers.sshd import SshdServer
from tests.transfer.test_engine_sftp import seed, tree

MiB = 1024 * 1024


def test_history_shows_states_and_the_error(make_config: MakeConfig, sshd: SshdServer,
                                            remote_dir: Path, tmp_path: Path, s3: Any,
                                            bucket: str) -> None:
    config = make_config({"t": sftp_destination(sshd, remote_dir)})
    done = run_cli("transfer", "--config", config, "--json", f"s3://{bucket}/nope", "t:",
                   cwd=tmp_path)
    result = json_line(done.stdout)
    assert done.returncode == 2 and result["error"]["type"] == "SourceNotFound"
    shown = run_cli("history", "--config", config, "--json", result["transfer_id"],
                    cwd=tmp_path)
    events = json_line(shown.stdout)["events"]
    failed = [e for e in events if e["event"] == "failed"]
    assert failed[0]["state"] == "ValidateInput" and failed[0]["error"] == "SourceNotFound"
    assert [e["state"] for e in events if e["event"] == "entered"][-1] == "TransferFailed"
    human = run_cli("history", "--config", config, result["transfer_id"], cwd=tmp_path)
    assert "HandleError" in human.stdout and "SourceNotFound" in human.stdout


async def _running_transfer(url: str) -> str:
    store = open_store(url)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            items, _ = await store.list_transfers(status="RUNNING")
            if items:
                return items[0].transfer_id
            await asyncio.sleep(0.1)
        raise AssertionError("no transfer started")
    finally:
        await store.close()


def test_cancel_stops_cleanly(make_config: MakeConfig, sshd: SshdServer, remote_dir: Path,
                              tmp_path: Path, s3: Any, bucket: str) -> None:
    seed(s3, bucket, {"slow.bin": secrets.token_bytes(16 * MiB)})
    config = make_config({"t": sftp_destination(sshd, remote_dir, bandwidth_limit=2 * MiB)},
                         transfer={"default_chunk_size": MiB})
    proc = subprocess.Popen(cli_command("transfer", "--config", str(config), "--json",
                                        f"s3://{bucket}/slow.bin", "t:"),
                            cwd=tmp_path, env=cli_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    settings = load_settings(config)
    try:
        tid = asyncio.run(_running_transfer(settings.store.url))
        asked = run_cli("cancel", "--config", config, "--json", tid, cwd=tmp_path)
        assert asked.returncode == 0, asked.stdout + asked.stderr
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    result = json_line(out)
    assert proc.returncode == 1 and result["status"] == "CANCELLED", err
    assert tree(remote_dir) == {}, "temporary file removed, nothing delivered"

    async def audit() -> list[Any]:
        store = open_store(settings.store.url)
        try:
            return await store.audit(tid)
        finally:
            await store.close()

    entries = asyncio.run(audit())
    updates = [e.detail["outcome"] for e in entries if e.event == "tickets_updated"]
    assert updates == ["CANCELLED"]
    assert "session_closed" in [e.event for e in entries]
    again = run_cli("cancel", "--config", config, "--json", tid, cwd=tmp_path)
    assert again.returncode == 2  # no longer running
