"""``fileferry store init``: SQLite schema or DynamoDB tables, and a second run changes
nothing; a store that cannot be reached is reported as such, by init and by transfer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import boto3
import pytest

from fileferry.sandbox.net import free_port
from fileferry.sandbox.s3 import MotoServer
from fileferry.store import TABLES
from tests.conftest import MakeConfig
from tests.helpers import json_line, run_cli
from tests.store.conftest import dynamo_prefix, dynamo_url


def test_init_sqlite(make_config: MakeConfig, tmp_path: Path) -> None:
    db = tmp_path / "state" / "ff.db"
    config = make_config({}, store={"url": f"sqlite:///{db}"})
    first = run_cli("store", "init", "--config", config, "--json", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    data = json_line(first.stdout)
    assert data["ok"] and data["store"] == f"sqlite:///{db}"
    assert [t["status"] for t in data["tables"]] == ["created"] and db.exists()
    again = run_cli("store", "init", "--config", config, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert f"items in {db}: existed" in again.stdout


def test_init_dynamodb_twice(make_config: MakeConfig, tmp_path: Path, moto: MotoServer) -> None:
    prefix = dynamo_prefix()
    config = make_config({}, store={"url": dynamo_url(moto, prefix)})
    first = run_cli("store", "init", "--config", config, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    for table in TABLES:
        assert f"{prefix}-{table}: created" in first.stdout
    assert f"{prefix}-leases: created (TTL on expires_at)" in first.stdout
    ddb: Any = boto3.client("dynamodb", endpoint_url=moto.endpoint_url, region_name="us-east-1")
    ttl = ddb.describe_time_to_live(TableName=f"{prefix}-leases")["TimeToLiveDescription"]
    assert ttl["TimeToLiveStatus"] == "ENABLED"

    again = run_cli("store", "init", "--config", config, "--json", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    tables = json_line(again.stdout)["tables"]
    assert {t["table"]: t["status"] for t in tables} == {
        f"{prefix}-{table}": "existed" for table in TABLES}
    assert [t["table"] for t in tables if t["ttl"]] == [f"{prefix}-leases"]


@pytest.mark.parametrize(("url", "says"), [
    ("dynamodb://state?region=eu-west-1", "store.url"),
    ("mysql://x", "sqlite:///PATH"),
])
def test_init_refuses_a_bad_url(make_config: MakeConfig, tmp_path: Path, url: str,
                                says: str) -> None:
    config = make_config({}, store={"url": url})
    done = run_cli("store", "init", "--config", config, "--json", cwd=tmp_path)
    assert done.returncode == 2
    error = json_line(done.stdout)["error"]
    assert error["type"] == "ConfigError" and says in error["message"]


def test_init_says_when_dynamodb_is_unreachable(make_config: MakeConfig,
                                                tmp_path: Path) -> None:
    url = f"dynamodb://?region=us-east-1&endpoint_url=http://127.0.0.1:{free_port()}"
    config = make_config({}, store={"url": url})
    done = run_cli("store", "init", "--config", config, cwd=tmp_path)
    assert done.returncode == 1
    assert "EndpointUnavailable" in done.stderr and "cannot reach" in done.stderr


def test_transfer_says_when_the_store_is_unreachable(make_config: MakeConfig,
                                                     tmp_path: Path) -> None:
    url = f"dynamodb://?region=us-east-1&endpoint_url=http://127.0.0.1:{free_port()}"
    config = make_config({"t": {"url": "sftp://ferry@127.0.0.1:2222/in/"}}, store={"url": url})
    done = run_cli("transfer", "--config", config, "--json", "s3://b/k", "t:", cwd=tmp_path)
    assert done.returncode == 1
    result = json_line(done.stdout)
    assert result["status"] == "FAILED" and result["error"]["type"] == "EndpointUnavailable"
    assert "FileFerry-transfers" in result["error"]["message"]
