"""``fileferry serve``, and ``list`` / ``status`` / ``cancel`` against the local store
and against the server (``--api URL``)."""

from __future__ import annotations

import secrets
import signal
import stat
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

from fileferry.api.server import BackgroundServer
from fileferry.sandbox.net import free_port
from tests.api.conftest import TOKEN, ApiEnv, MiB, wait_for
from tests.helpers import cli_command, cli_env, json_line, run_cli, seed


def test_serve_generates_a_private_token_and_prints_only_its_path(tmp_path: Path) -> None:
    config = tmp_path / "fileferry.yaml"
    config.write_text(yaml.safe_dump({"store": {"url": f"sqlite:///{tmp_path}/s/ff.db"}}))
    port = free_port()
    proc = subprocess.Popen(cli_command("serve", "--config", config, "--port", str(port)),
                            env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    token_file = tmp_path / "s" / "api-token"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline and proc.poll() is None, "serve did not start"
            time.sleep(0.1)
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        token = token_file.read_text().strip()
        url = f"http://127.0.0.1:{port}/api/transfers"
        assert httpx.get(url).status_code == 401
        assert httpx.get(url, headers={"Authorization": f"Bearer {token}"}).json()["count"] == 0
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    # uvicorn shuts down gracefully, then re-raises the signal it caught
    assert proc.returncode in (0, -signal.SIGTERM), err
    assert "Application shutdown complete" in err
    assert f"generated a new API token into {token_file}" in " ".join(err.split())
    assert token not in out + err


def _start(client: httpx.Client, api_env: ApiEnv, s3: Any, size: int, dest: str,
           who: str) -> str:
    sub = "c-" + secrets.token_hex(4)
    seed(s3, api_env.bucket, {f"{sub}/f.bin": secrets.token_bytes(size)})
    answer = client.post("/api/transfers", json={
        "sources": [f"s3://{api_env.bucket}/{sub}/f.bin"], "destination": f"{dest}:{sub}/",
        "options": {"requester": who}})
    assert answer.status_code == 202, answer.text
    tid: str = answer.json()["transfer_id"]
    return tid


def test_list_and_status_locally_and_through_the_api(client: httpx.Client,
                                                     api_server: BackgroundServer,
                                                     api_env: ApiEnv, s3: Any,
                                                     tmp_path: Path) -> None:
    who = "bob"
    tid = _start(client, api_env, s3, 100_000, "t", who)
    shown = wait_for(client, tid)
    env = {"FILEFERRY_TOKEN": TOKEN}
    local = json_line(run_cli("status", tid, "--config", api_env.config, "--json",
                              cwd=tmp_path).stdout)
    remote = json_line(run_cli("status", tid, "--api", api_server.url, "--json",
                               cwd=tmp_path, env=env).stdout)
    assert local == remote == shown
    assert local["files"][0]["sha256"] and local["status"] == "SUCCEEDED"
    pages = [json_line(run_cli("list", *where, "--requester", who, "--status", "SUCCEEDED",
                               "--json", cwd=tmp_path, env=env).stdout)
             for where in (("--config", str(api_env.config)), ("--api", api_server.url))]
    assert pages[0] == pages[1]
    assert tid in {t["transfer_id"] for t in pages[0]["data"]}
    human = run_cli("status", tid, "--config", api_env.config, cwd=tmp_path)
    assert human.returncode == 0 and local["files"][0]["sha256"][:12] in human.stdout
    table = run_cli("list", "--config", api_env.config, "--requester", who, cwd=tmp_path)
    assert table.returncode == 0 and tid in table.stdout


def test_refusals_of_list_status_and_cancel(api_server: BackgroundServer, api_env: ApiEnv,
                                            tmp_path: Path) -> None:
    cases = [
        (("status", "tr-0000000000000000", "--config", api_env.config), "no transfer"),
        (("status", "tr-0000000000000000", "--api", api_server.url), "no transfer"),
        (("list", "--status", "DONE", "--config", api_env.config), "--status"),
        (("list", "--api", api_server.url, "--cursor", "zz"), "cursor"),
        (("cancel", "tr-0000000000000000", "--api", api_server.url), "no transfer"),
        (("list", "--api", "ftp://x"), "http(s)://"),
    ]
    for args, expected in cases:
        done = run_cli(*args, "--json", cwd=tmp_path, env={"FILEFERRY_TOKEN": TOKEN})
        assert done.returncode == 2, (args, done.stdout, done.stderr)
        body = json_line(done.stdout)
        assert not body["ok"] and expected in body["error"]["message"], (args, body)
    no_token = run_cli("list", "--api", api_server.url, "--json", cwd=tmp_path,
                       unset=("FILEFERRY_TOKEN",))
    assert no_token.returncode == 2 and "FILEFERRY_TOKEN" in no_token.stdout
    wrong = run_cli("list", "--api", api_server.url, "--json", cwd=tmp_path,
                    env={"FILEFERRY_TOKEN": "x" * 30})
    assert json_line(wrong.stdout)["error"]["type"] == "AuthenticationFailed"


def test_cancel_through_the_api_and_through_the_store(client: httpx.Client,
                                                      api_server: BackgroundServer,
                                                      api_env: ApiEnv, s3: Any,
                                                      tmp_path: Path) -> None:
    for how in (("--api", api_server.url), ("--config", str(api_env.config))):
        tid = _start(client, api_env, s3, 8 * MiB, "slow", "alice")
        wait_for(client, tid, lambda t: t["status"] == "RUNNING" and t["bytes_done"] > 0)
        asked = run_cli("cancel", tid, *how, "--json", cwd=tmp_path,
                        env={"FILEFERRY_TOKEN": TOKEN})
        assert asked.returncode == 0, asked.stdout + asked.stderr
        assert json_line(asked.stdout) == {"ok": True, "transfer_id": tid,
                                           "cancel": "requested"}
        assert wait_for(client, tid)["status"] == "CANCELLED"
