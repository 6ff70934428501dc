"""Who the CLI acts as: the token's user with sso, the OS user without (and it says so)."""

from __future__ import annotations

import asyncio
import getpass
from pathlib import Path
from typing import Any

import pytest

from fileferry.config import load_settings
from fileferry.sandbox.oidc import OidcProvider
from fileferry.store import open_store
from tests.conftest import MakeConfig, ftp_target, sftp_destination
from tests.helpers import json_line, run_cli, seed
from tests.identity.conftest import sso_section
from tests.servers.sshd import SshdServer


def requester_of(config: Path, transfer_id: str) -> str:
    async def look() -> str:
        async with open_store(load_settings(config).store.url) as store:
            record = await store.get_transfer(transfer_id)
            assert record is not None
            return record.requester

    return asyncio.run(look())


def test_with_sso_the_token_decides_who_asks(make_config: MakeConfig, oidc: OidcProvider,
                                             sshd: SshdServer, remote_dir: Path,
                                             tmp_path: Path, s3: Any, bucket: str) -> None:
    seed(s3, bucket, {"k.txt": b"1\n"})
    rules = [{"name": "finance-out", "groups": ["finance"], "destinations": ["t"],
              "sources": [f"s3://{bucket}/*"]}]
    config = make_config({"t": sftp_destination(sshd, remote_dir)}, policies=rules,
                         sso=sso_section(oidc))
    args = ("transfer", "--config", config, "--json", f"s3://{bucket}/k.txt", "t:")

    missing = run_cli(*args, cwd=tmp_path, unset=("FILEFERRY_TOKEN",))
    assert missing.returncode == 2
    assert "give --token JWT or set FILEFERRY_TOKEN" in json_line(missing.stdout)["error"][
        "message"]

    expired = oidc.mint(user="alice", expires_in=-300)
    bad = run_cli(*args, cwd=tmp_path, env={"FILEFERRY_TOKEN": expired})
    assert bad.returncode == 2
    assert json_line(bad.stdout)["error"] == {"type": "InvalidToken",
                                              "message": "token refused: expired"}
    assert expired not in bad.stdout + bad.stderr

    denied = run_cli(*args, "--token", oidc.mint(user="carol"), cwd=tmp_path)
    assert denied.returncode == 2
    error = json_line(denied.stdout)["error"]
    assert error["type"] == "PolicyDenied" and "rule 'finance-out' is for group finance" \
        in error["message"]

    ok = run_cli(*args, "--user", "mallory", cwd=tmp_path,
                 env={"FILEFERRY_TOKEN": oidc.mint(user="alice")})
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "--user is ignored: sso is configured; acting as alice" in ok.stderr
    assert requester_of(config, json_line(ok.stdout)["transfer_id"]) == "alice"


def test_without_sso_the_os_user_asks_and_is_told_so(make_config: MakeConfig,
                                                     sshd: SshdServer, remote_dir: Path,
                                                     tmp_path: Path, s3: Any,
                                                     bucket: str) -> None:
    seed(s3, bucket, {"k.txt": b"1\n"})
    config = make_config({"t": sftp_destination(sshd, remote_dir)})
    done = run_cli("transfer", "--config", config, "--json", "--token", "whatever",
                   f"s3://{bucket}/k.txt", "t:", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    me = getpass.getuser()
    assert f"no sso configured: acting as the OS user {me}" in done.stderr
    assert "--token is ignored" in done.stderr
    assert requester_of(config, json_line(done.stdout)["transfer_id"]) == me


def test_a_dry_run_checks_the_policy_and_uses_the_secret(
        request: pytest.FixtureRequest, make_config: MakeConfig, oidc: OidcProvider,
        tmp_path: Path, s3: Any, bucket: str) -> None:
    seed(s3, bucket, {"k.txt": b"1\n"})
    dest, local = ftp_target(request, "pyftpd")
    dest["password_env"] = "FF_DRY_RUN_PASSWORD"
    password = dest.pop("password")
    rules = [{"name": "finance-out", "groups": ["finance"], "destinations": ["t"],
              "sources": [f"s3://{bucket}/*"]}]
    config = make_config({"t": dest}, policies=rules, sso=sso_section(oidc))
    args = ("transfer", "--config", config, "--json", "--dry-run", f"s3://{bucket}/k.txt", "t:")
    denied = run_cli(*args, cwd=tmp_path, env={"FILEFERRY_TOKEN": oidc.mint(user="carol"),
                                               "FF_DRY_RUN_PASSWORD": password})
    assert denied.returncode == 2
    assert json_line(denied.stdout)["error"]["type"] == "PolicyDenied"
    planned = run_cli(*args, cwd=tmp_path, env={"FILEFERRY_TOKEN": oidc.mint(user="alice"),
                                                "FF_DRY_RUN_PASSWORD": password})
    assert planned.returncode == 0, planned.stdout + planned.stderr
    assert [f["status"] for f in json_line(planned.stdout)["files"]] == ["PLANNED"]
    assert password not in planned.stdout + planned.stderr
    assert list(local.iterdir()) == []
