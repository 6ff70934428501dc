"""Two processes on one store (a SQLite file, or DynamoDB tables on moto's server): they
see each other's writes, and a lease has one owner."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest

from fileferry.store import open_store
from tests.store.conftest import BACKENDS, dynamo_prefix, dynamo_url

LEASES = 100
APPENDS = 40

CHILD = r"""
import asyncio, json, sys
from fileferry.store import TransferRecord, open_store

async def main(url: str, owner: str, leases: int, appends: int) -> None:
    async with open_store(url) as store:
        await store.create_transfer(TransferRecord(
            transfer_id="tr-shared", requester=owner, sources=[], destination="d:"))
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        won = []
        for i in range(max(leases, appends)):
            if i < leases and await store.acquire_lease(f"ex-{i}", owner, now=1000.0, ttl=60.0):
                won.append(i)
            if i < appends:
                await store.append_audit("tr-shared", "tick", {"owner": owner, "i": i}, at=1.0)
        print(json.dumps(won), flush=True)

asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])))
"""


@pytest.mark.parametrize("kind", BACKENDS)
async def test_two_processes_contend_for_leases(tmp_path: Path, kind: str,
                                               request: pytest.FixtureRequest) -> None:
    url = (f"sqlite:///{tmp_path}/shared/fileferry.db" if kind == "sqlite"
           else dynamo_url(request.getfixturevalue("moto"), dynamo_prefix()))
    children = [await asyncio.create_subprocess_exec(
        sys.executable, "-c", CHILD, url, owner, str(LEASES), str(APPENDS),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
        for owner in ("p1", "p2")]
    try:
        for child in children:  # both are connected before either starts
            assert child.stdout is not None
            line = await asyncio.wait_for(child.stdout.readline(), 60)
            assert line.strip() == b"ready"
        outs = await asyncio.wait_for(asyncio.gather(
            *(child.communicate(b"go\n") for child in children)), 120)
    finally:
        for child in children:
            if child.returncode is None:
                child.kill()
                await child.wait()
    assert [child.returncode for child in children] == [0, 0]
    won = {owner: set(json.loads(out)) for owner, (out, _) in zip(("p1", "p2"), outs,
                                                                  strict=True)}
    assert won["p1"] & won["p2"] == set()
    assert won["p1"] | won["p2"] == set(range(LEASES))  # exactly one winner per lease

    async with open_store(url) as store:
        for i in range(LEASES):
            expected = "p1" if i in won["p1"] else "p2"
            assert await store.lease_owner(f"ex-{i}", now=1001.0) == expected
        # one process's create won, the other got the same record back
        created = await store.get_transfer("tr-shared")
        assert created is not None and created.version == 1
        entries = await store.audit("tr-shared")
        assert [e.seq for e in entries] == list(range(1, 2 * APPENDS + 1))
        for owner in ("p1", "p2"):
            mine = [e.detail["i"] for e in entries if e.detail["owner"] == owner]
            assert mine == list(range(APPENDS))  # each process's appends, in its order
