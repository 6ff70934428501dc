"""The 15-minute limit, simulated: the whole workflow runs on the ASL interpreter with every
Task calling its Lambda handler; ChunkedTransfer gets a context with almost no time left
twice, so one large file takes three invocations, each continuing where the last stopped."""

from __future__ import annotations

import hashlib
import secrets
from pathlib import Path
from typing import Any

import pytest

from fileferry.config import parse_settings
from fileferry.models import new_transfer_id
from fileferry.store import open_store
from fileferry.workflow.asl import execute
from fileferry.workflow.registry import LOCAL_PREFIX
from fileferry.workflow.runner import load_machine
from tests.aws.conftest import LambdaEnv, event
from tests.aws.test_handlers import call, lambda_config, start
from tests.conftest import ftp_target, sftp_destination
from tests.transfer.test_engine_sftp import seed

CHUNK = 256 * 1024  # what is left after a chunk exceeds s3.SMALL: the GET streams
BIG = secrets.token_bytes(2 * CHUNK + 4321)  # three chunks


async def no_sleep(seconds: float) -> None:
    return None


def destination(request: pytest.FixtureRequest, kind: str) -> tuple[dict[str, Any], Path]:
    if kind == "sftp":
        root: Path = request.getfixturevalue("remote_dir")
        return sftp_destination(request.getfixturevalue("sshd"), root), root
    return ftp_target(request, kind)


@pytest.mark.parametrize("kind", ["sftp", "proftpd"])
async def test_a_large_file_takes_three_invocations(request: pytest.FixtureRequest, kind: str,
                                                    lambda_env: LambdaEnv, tmp_path: Path,
                                                    s3: Any, bucket: str, moto: Any) -> None:
    dest, root = destination(request, kind)
    seed(s3, bucket, {"2026-11/big.bin": BIG, "2026-11/small.txt": b"small\n"})
    config = lambda_config(moto.endpoint_url, tmp_path, {"partner": dest},
                           transfer={"small_file_threshold": 1024,
                                     "large_file_threshold": 100 * 1024,
                                     "default_chunk_size": CHUNK})
    lambda_env(config)
    tid = new_transfer_id()
    payload = event("validate_input", tid, bucket)
    await start(config, payload)
    budgets = [1_000, 1_000]  # ms left: below the 60 s margin, so stop after one chunk
    chunk_inputs: list[dict[str, Any]] = []
    committed: list[int] = []

    async def invoker(resource: str, data: Any, context: dict[str, Any]) -> Any:
        name = resource.removeprefix(LOCAL_PREFIX)
        if name != "ChunkedTransferFunction":
            return await call(name, data)
        chunk_inputs.append(data)
        out = await call(name, data, remaining_ms=budgets.pop(0) if budgets else 900_000)
        temps = [p.stat().st_size for p in (root / "daily").glob(".big.bin.*.fftmp")]
        committed.extend(temps)
        return out

    result = await execute(load_machine(), payload, invoker=invoker,
                           execution_id=payload["execution_id"], execution_name=tid,
                           sleep=no_sleep)
    assert result.status == "SUCCEEDED", (result.error, result.cause)
    assert len(chunk_inputs) == 3
    offsets = [(d.get("chunk") or {}).get("checkpoint", {}) for d in chunk_inputs]
    assert [o.get("offset") if o else None for o in offsets] == [None, CHUNK, 2 * CHUNK]
    assert committed == [CHUNK, 2 * CHUNK]  # each stop left its prefix under the temp name
    delivered = (root / "daily" / "big.bin").read_bytes()
    assert hashlib.sha256(delivered).hexdigest() == hashlib.sha256(BIG).hexdigest()
    settings = parse_settings(config)
    store = open_store(settings.store.url)
    try:
        files = {f.destination.rsplit("/", 1)[1]: f for f in await store.get_files(tid)}
    finally:
        await store.close()
    big = files["big.bin"]
    assert big.status == "DELIVERED" and big.sha256 == hashlib.sha256(BIG).hexdigest()
    assert big.md5 == hashlib.md5(BIG).hexdigest()
    assert big.verified_by in ("server-md5", "server-sha256")
    assert files["small.txt"].status == "DELIVERED"
    assert not list((root / "daily").glob(".*fftmp"))
