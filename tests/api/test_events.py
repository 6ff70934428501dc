"""Live events over Server-Sent Events: for the server's own transfers (from the
progress subscriber) and for transfers another process runs (from the store)."""

from __future__ import annotations

import secrets
import subprocess
import threading
from typing import Any

import httpx

from fileferry.api.server import BackgroundServer
from tests.api.conftest import TOKEN, ApiEnv, MiB, sse_events, wait_for
from tests.helpers import cli_command, cli_env, json_line, seed

AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _intermediate(events: list[dict[str, Any]]) -> list[int]:
    return [e["transfer"]["bytes_done"] for e in events
            if 0 < e["transfer"]["bytes_done"] < e["transfer"]["bytes_total"]]


def test_a_throttled_transfer_streams_growing_progress(client: httpx.Client,
                                                       api_env: ApiEnv, s3: Any,
                                                       subdir: str) -> None:
    body = secrets.token_bytes(2 * MiB)
    seed(s3, api_env.bucket, {f"{subdir}/big.bin": body})
    tid = client.post("/api/transfers", json={
        "sources": [f"s3://{api_env.bucket}/{subdir}/big.bin"],
        "destination": f"slow:{subdir}/"}).json()["transfer_id"]
    received: list[tuple[str, dict[str, Any]]] = []
    with client.stream("GET", f"/api/transfers/{tid}/events", timeout=60) as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        for kind, data in sse_events(stream):
            received.append((kind, data))
    kinds = [k for k, _ in received]
    assert kinds[0] == "status" and kinds[-1] == "status", kinds
    last = received[-1][1]
    assert last["final"] and last["transfer"]["status"] == "SUCCEEDED"
    assert last["transfer"]["bytes_done"] == len(body)
    progress = [d for k, d in received if k == "progress"]
    moving = _intermediate(progress)
    assert len(set(moving)) >= 3, f"expected several intermediate values, got {moving}"
    assert moving == sorted(moving), "byte counts only grow"
    files = [d["file"] for k, d in received if k == "file"]
    assert files and files[0]["status"] == "DELIVERED" and files[0]["sha256"]


def test_a_transfer_run_by_the_cli_shows_up(api_server: BackgroundServer, client: httpx.Client,
                                            api_env: ApiEnv, s3: Any, subdir: str) -> None:
    seed(s3, api_env.bucket, {f"{subdir}/cli.bin": secrets.token_bytes(2 * MiB)})
    who = "cli-" + secrets.token_hex(3)
    mine: list[tuple[str, dict[str, Any]]] = []
    listening = threading.Event()

    def listen() -> None:
        with httpx.stream("GET", api_server.url + "/api/events", headers=AUTH,
                          timeout=60) as stream:
            listening.set()
            for kind, data in sse_events(stream):
                if data["transfer"]["requester"] == who:
                    mine.append((kind, data))
                    if data["final"]:
                        return

    reader = threading.Thread(target=listen, daemon=True)
    reader.start()
    assert listening.wait(10)
    done = subprocess.run(cli_command("transfer", "--config", api_env.config, "--user", who,
                                      "--json", f"s3://{api_env.bucket}/{subdir}/cli.bin",
                                      f"slow:{subdir}/"),
                          env=cli_env(), capture_output=True, text=True, timeout=120,
                          check=False)
    result = json_line(done.stdout)
    assert result["status"] == "SUCCEEDED", done.stderr
    reader.join(30)
    assert not reader.is_alive(), f"no final event; got {[k for k, _ in mine]}"
    assert {d["transfer"]["transfer_id"] for _, d in mine} == {result["transfer_id"]}
    assert _intermediate([d for _, d in mine]), "the store poller showed it moving"
    assert mine[-1][1]["transfer"]["status"] == "SUCCEEDED"
    shown = wait_for(client, result["transfer_id"])
    assert shown["files"][0]["sha256"] == result["files"][0]["sha256"]
