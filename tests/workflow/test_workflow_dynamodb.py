"""The whole workflow with its state in DynamoDB (moto's server): moto's S3 -> sshd."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3

from fileferry.config import Settings
from fileferry.sandbox.s3 import MotoServer
from fileferry.services import history, submit_transfer
from fileferry.store import open_store
from fileferry.transfer.engine import TransferRequest
from tests.conftest import sftp_destination
from tests.servers.sshd import SshdServer
from tests.store.conftest import dynamo_prefix, dynamo_url
from tests.transfer.test_engine_sftp import seed, tree

MiB = 1024 * 1024


async def no_sleep(seconds: float) -> None:
    return None


async def test_a_transfer_keeps_its_state_in_dynamodb(
        settings_for: Callable[..., Settings], sshd: SshdServer, remote_dir: Path, s3: Any,
        bucket: str, moto: MotoServer, tmp_path: Path) -> None:
    files = {"d/a.txt": b"alpha\n", "d/b.txt": b"beta\n", "d/big.bin": secrets.token_bytes(MiB)}
    seed(s3, bucket, files)
    prefix = dynamo_prefix()
    settings = settings_for({"t": sftp_destination(sshd, remote_dir)},
                            transfer={"small_file_threshold": 64 * 1024},
                            store={"url": dynamo_url(moto, prefix)})
    request = TransferRequest(sources=[f"s3://{bucket}/d/"], destination="t:",
                              requester="alice")
    result = await submit_transfer(settings, request, sleep=no_sleep)

    assert result.status == "SUCCEEDED", result.error
    assert tree(remote_dir) == {k[2:]: v for k, v in files.items()}
    assert {f.destination.rsplit("/", 1)[1]: f.sha256 for f in result.files} == {
        k[2:]: hashlib.sha256(v).hexdigest() for k, v in files.items()}
    events = await history(settings, result.transfer_id)
    assert [e["state"] for e in events if e["event"] == "entered" and "/" not in e["path"]][
        -1] == "TransferComplete"

    async with open_store(settings.store.url) as store:
        listed, _ = await store.list_transfers(status="SUCCEEDED", requester="alice")
        assert [t.transfer_id for t in listed] == [result.transfer_id]
        assert [f.status for f in await store.get_files(result.transfer_id)] == [
            "DELIVERED"] * 3
        audit = [e.event for e in await store.audit(result.transfer_id)]
        assert audit.count("tickets_created") == audit.count("notified") == 1
        assert await store.unfinished_executions() == []
        assert result.execution_id is not None
        assert await store.lease_owner(result.execution_id, now=0.0) is None  # released

    ddb: Any = boto3.client("dynamodb", endpoint_url=moto.endpoint_url, region_name="us-east-1")
    stored = ddb.get_item(TableName=f"{prefix}-transfers",
                          Key={"pk": {"S": result.transfer_id}, "sk": {"S": "_"}})["Item"]
    assert stored["f_status"] == {"S": "SUCCEEDED"}  # really in DynamoDB, not elsewhere
    assert not (tmp_path / "fileferry.db").exists()  # make_config's SQLite default: unused
