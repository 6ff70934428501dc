"""Known secret values never show up anywhere: logs, the store (raw), tickets, webhooks, CLI.

One transfer succeeds (through the CLI, verbose), one fails after logging in (in
process, every logger at DEBUG), one is denied by policy; the FTP password comes from
Secrets Manager, and ServiceNow, the webhook URL and the OIDC client carry secrets too.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from fileferry.config import load_settings
from fileferry.identity.principal import Principal
from fileferry.sandbox.oidc import OidcProvider
from fileferry.sandbox.s3 import MotoServer
from fileferry.sandbox.servicenow import ServiceNowEmulator
from fileferry.sandbox.webhooks import WebhookReceiver
from fileferry.services import submit_transfer
from fileferry.transfer.engine import TransferRequest
from tests.conftest import FTP_PASSWORD, MakeConfig, ftp_target
from tests.helpers import files_under, json_line, run_cli, seed
from tests.identity.conftest import sso_section

SN_PASSWORD = "sn-pw-" + secrets.token_hex(8)
CLIENT_SECRET = "oidc-client-" + secrets.token_hex(8)
HOOK_PATH = "hooks/" + secrets.token_hex(10)


async def no_sleep(seconds: float) -> None:
    return None


@pytest.fixture
def sn() -> Iterator[ServiceNowEmulator]:
    with ServiceNowEmulator(password=SN_PASSWORD) as emulator:
        yield emulator


@pytest.fixture
def hooks() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as receiver:
        yield receiver


def store_bytes(store_url: str) -> bytes:
    db = Path(store_url.removeprefix("sqlite:///"))
    return b"".join(p.read_bytes() for p in sorted(db.parent.glob(db.name + "*")))


async def test_no_secret_is_written_anywhere(
        request: pytest.FixtureRequest, make_config: MakeConfig, moto: MotoServer,
        oidc: OidcProvider, sn: ServiceNowEmulator, hooks: WebhookReceiver, s3: Any,
        bucket: str, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    seed(s3, bucket, {"ok/a.csv": b"a,b\n1,2\n"})
    dest, local = ftp_target(request, "pyftpd")
    dest.pop("password")
    sm = boto3.client("secretsmanager", endpoint_url=moto.endpoint_url, region_name="us-east-1")
    dest["secret_arn"] = sm.create_secret(Name="ff/scan-" + secrets.token_hex(4),
                                          SecretString=json.dumps({"password": FTP_PASSWORD}),
                                          )["ARN"]
    rules = [{"name": "finance-out", "groups": ["finance"], "destinations": ["t"],
              "sources": [f"s3://{bucket}/*"]}]
    config = make_config(
        {"t": dest}, policies=rules,
        sso=sso_section(oidc, client_id="dashboard", client_secret=CLIENT_SECRET),
        secrets_manager={"endpoint_url": moto.endpoint_url},
        servicenow={"instance_url": sn.url, "username": sn.username, "password": SN_PASSWORD},
        notifications={"channels": [{"name": "siem", "kind": "webhook",
                                     "url": hooks.url(HOOK_PATH)}]})
    alice, carol = oidc.mint(user="alice"), oidc.mint(user="carol")
    known = {"ftp password": FTP_PASSWORD, "servicenow password": SN_PASSWORD,
             "oidc client secret": CLIENT_SECRET, "webhook url": HOOK_PATH,
             "alice's token": alice, "carol's token": carol}

    # 1. success, through the CLI, as verbose as it gets
    ok = run_cli("-vv", "transfer", "--config", config, "--json", f"s3://{bucket}/ok/", "t:",
                 cwd=tmp_path, env={"FILEFERRY_TOKEN": alice})
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert files_under(local) == {"a.csv": b"a,b\n1,2\n"}
    # 2. denied by policy (still ticketed)
    denied = run_cli("transfer", "--config", config, "--json", f"s3://{bucket}/ok/", "t:",
                     cwd=tmp_path, env={"FILEFERRY_TOKEN": carol})
    assert denied.returncode == 2 and json_line(denied.stdout)["error"]["type"] == "PolicyDenied"
    # 3. a failure after logging in, in process, every logger at DEBUG
    caplog.set_level(logging.DEBUG)
    settings = load_settings(config)
    (local / "blocked").write_bytes(b"a file where a directory should be\n")
    failed = await submit_transfer(
        settings, TransferRequest(sources=[f"s3://{bucket}/ok/a.csv"],
                                  destination="t:blocked/"),
        principal=Principal("alice", frozenset({"finance"})), sleep=no_sleep)
    assert failed.status == "FAILED" and failed.error is not None, failed

    places = {
        "CLI output": ok.stdout + ok.stderr + denied.stdout + denied.stderr,
        "log records": "\n".join(f"{r.name} {r.getMessage()} {r.exc_text or ''}"
                                 for r in caplog.records),
        "the store (raw SQLite files)": store_bytes(settings.store.url).decode("latin-1"),
        "ServiceNow records": json.dumps(sn.store.rows),
        "webhook payloads": "\n".join(r.raw.decode() + json.dumps(r.headers)
                                      for r in hooks.received),
    }
    # the scan looks at real material: tickets, notices, debug logs, the secret's use
    assert len(sn.records("incident")) == 6, "user and audit tickets for all three"
    assert len(hooks.received) == 3
    assert "DEBUG" in ok.stderr and len(caplog.records) > 20
    assert "secretsmanager:" in places["the store (raw SQLite files)"]
    leaks = [f"{what} in {where}" for where, text in places.items()
             for what, value in known.items() if value in text]
    assert not leaks
