"""``/api/transfers`` over real HTTP: start, run to the end, list, cancel, refuse."""

from __future__ import annotations

import asyncio
import hashlib
import re
import secrets
import time
from typing import Any

import httpx
import pytest

from fileferry.store import TransferRecord, open_store
from tests.api.conftest import ApiEnv, MiB, wait_for
from tests.helpers import seed
from tests.transfer.test_engine_sftp import tree


def metric(client: httpx.Client, name: str, labels: str = "") -> float:
    text = client.get("/metrics").text
    match = re.search(rf"^{re.escape(name + labels)} (\S+)$", text, re.M)
    return float(match.group(1)) if match else 0.0


def test_post_runs_the_transfer_to_the_end(client: httpx.Client, api_env: ApiEnv, s3: Any,
                                           subdir: str) -> None:
    body = secrets.token_bytes(300 * 1024)
    seed(s3, api_env.bucket, {f"{subdir}/report.bin": body})
    bytes_before = metric(client, "fileferry_bytes_transferred_total")
    ok_before = metric(client, "fileferry_transfers_total", '{status="SUCCEEDED"}')
    answer = client.post("/api/transfers", json={
        "sources": [f"s3://{api_env.bucket}/{subdir}/report.bin"],
        "destination": f"t:{subdir}/", "options": {"requester": "alice"}})
    assert answer.status_code == 202, answer.text
    started = answer.json()
    tid = started["transfer_id"]
    assert started["status"] == "PENDING" and started["requester"] == "alice"
    assert answer.headers["location"] == f"/api/transfers/{tid}"
    done = wait_for(client, tid)
    assert done["status"] == "SUCCEEDED", done["error"]
    [file] = done["files"]
    assert file["sha256"] == hashlib.sha256(body).hexdigest()
    assert file["status"] == "DELIVERED" and file["verified_by"] == "server-md5"
    assert tree(api_env.remote / subdir) == {"report.bin": body}
    assert done["bytes_done"] == done["bytes_total"] == len(body)
    assert re.fullmatch(r"INC\d+", done["tickets"]["user"]), done["tickets"]
    assert done["ticket_links"]["audit"].startswith(api_env.snow.url)
    assert [e["state"] for e in done["history"] if e["event"] == "entered"][-1] == \
        "TransferComplete"
    # The body is the CLI's --json object plus the live fields.
    assert {"transfer_id", "execution_id", "status", "files", "error", "tickets"} <= set(done)
    assert metric(client, "fileferry_bytes_transferred_total") >= bytes_before + len(body)
    # The worker counts the transfer once its workflow returns, just after the store says so.
    deadline = time.monotonic() + 10
    while metric(client, "fileferry_transfers_total", '{status="SUCCEEDED"}') < ok_before + 1:
        assert time.monotonic() < deadline, "the transfer was never counted"
        time.sleep(0.05)
    assert metric(client, "fileferry_files_total", '{status="DELIVERED"}') >= 1
    assert "fileferry_transfer_duration_seconds_count" in client.get("/metrics").text


@pytest.mark.parametrize(("payload", "field"), [
    ({"destination": "t:"}, "sources"),
    ({"sources": [], "destination": "t:"}, "sources"),
    ({"sources": ["http://example.com/x"], "destination": "t:"}, "sources[0]"),
    ({"sources": ["s3://b/k", "s3:///k"], "destination": "t:"}, "sources[1]"),
    ({"sources": ["s3://b/k"], "destination": "no-colon"}, "destination"),
    ({"sources": ["s3://b/k"], "destination": "t:../../etc"}, "destination"),
    ({"sources": ["s3://b/k"], "destination": "t:", "options": {"force": True}},
     "options.force"),
    ({"sources": ["s3://b/k"], "destination": "t:", "options": {"requester": "a b"}},
     "options.requester"),
    ({"sources": "s3://b/k", "destination": "t:"}, "sources"),
])
def test_bad_input_is_422_naming_the_field(client: httpx.Client, payload: dict[str, Any],
                                           field: str) -> None:
    answer = client.post("/api/transfers", json=payload)
    assert answer.status_code == 422, answer.text
    error = answer.json()["error"]
    assert field in [f["field"] for f in error["fields"]], error
    assert field in error["message"]


def test_unknown_destination_is_refused_before_anything_is_recorded(
        client: httpx.Client) -> None:
    before = client.get("/api/transfers", params={"requester": "nobody-here"}).json()
    answer = client.post("/api/transfers", json={
        "sources": ["s3://b/k"], "destination": "nowhere:in/",
        "options": {"requester": "nobody-here"}})
    assert answer.status_code == 422
    error = answer.json()["error"]
    assert error["type"] == "UnknownDestination" and "slow" in error["message"]
    assert error["fields"][0]["field"] == "destination"
    after = client.get("/api/transfers", params={"requester": "nobody-here"}).json()
    assert after["count"] == before["count"] == 0


@pytest.mark.parametrize(("method", "path", "status"), [
    ("GET", "/api/transfers/tr-0000000000000000", 404),
    ("POST", "/api/transfers/tr-0000000000000000/cancel", 404),
    ("GET", "/api/transfers/tr-0000000000000000/events", 404),
    ("GET", "/api/transfers/..%2F..%2Fetc", 404),
    ("GET", "/api/transfers/bad%20id", 422),
    ("GET", "/api/transfers?status=DONE", 422),
    ("GET", "/api/transfers?limit=0", 422),
    ("GET", "/api/transfers?cursor=not-a-cursor", 422),
    ("GET", "/api/nothing-here", 404),
    ("DELETE", "/api/transfers", 405),
])
def test_errors_are_4xx_with_a_body(client: httpx.Client, method: str, path: str,
                                    status: int) -> None:
    answer = client.request(method, path)
    assert answer.status_code == status, answer.text
    assert answer.json()["error"]["message"]


def test_malformed_json_is_422(client: httpx.Client) -> None:
    answer = client.post("/api/transfers", content=b"{not json",
                         headers={"Content-Type": "application/json"})
    assert answer.status_code == 422
    assert answer.json()["error"]["type"] == "UsageError"


async def _record(store_url: str, records: list[TransferRecord]) -> None:
    store = open_store(store_url)
    try:
        for record in records:
            await store.create_transfer(record)
    finally:
        await store.close()


def test_list_filters_and_pages(client: httpx.Client, api_env: ApiEnv) -> None:
    who = "lister-" + secrets.token_hex(3)
    records = [TransferRecord(transfer_id=f"tr-{secrets.token_hex(8)}", requester=who,
                              sources=["s3://b/k"], destination=dest, status=status)
               for dest, status in [("t:a/", "SUCCEEDED"), ("t:b/", "FAILED"),
                                    ("slow:", "SUCCEEDED"), ("t:a/", "SUCCEEDED"),
                                    ("slow:x/", "CANCELLED")]]
    asyncio.run(_record(api_env.store_url, records))
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"requester": who, "limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = client.get("/api/transfers", params=params).json()
        assert page["count"] == len(page["data"]) <= 2
        seen += [t["transfer_id"] for t in page["data"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == sorted(r.transfer_id for r in records) and len(seen) == 5

    def ids(**params: Any) -> set[str]:
        data = client.get("/api/transfers", params={"requester": who, **params}).json()
        return {t["transfer_id"] for t in data["data"]}

    by = {i: r.transfer_id for i, r in enumerate(records)}
    assert ids(status="SUCCEEDED") == {by[0], by[2], by[3]}
    assert ids(destination="t:a/") == {by[0], by[3]}
    assert ids(destination="slow") == {by[2], by[4]}
    assert ids(destination="slow", status="CANCELLED") == {by[4]}


def test_cancel_a_running_transfer(client: httpx.Client, api_env: ApiEnv, s3: Any,
                                   subdir: str) -> None:
    seed(s3, api_env.bucket, {f"{subdir}/slow.bin": secrets.token_bytes(8 * MiB)})
    tid = client.post("/api/transfers", json={
        "sources": [f"s3://{api_env.bucket}/{subdir}/slow.bin"],
        "destination": f"slow:{subdir}/"}).json()["transfer_id"]
    wait_for(client, tid, lambda t: t["status"] == "RUNNING" and t["bytes_done"] > 0)
    asked = client.post(f"/api/transfers/{tid}/cancel")
    assert asked.status_code == 202 and asked.json()["cancel_requested"] is True
    done = wait_for(client, tid)
    assert done["status"] == "CANCELLED"
    assert tree(api_env.remote / subdir) == {}, "the temporary file is removed"
    again = client.post(f"/api/transfers/{tid}/cancel")
    assert again.status_code == 409 and again.json()["error"]["type"] == "NotRunning"


def test_a_missing_object_ends_refused_as_transfer_json_says(client: httpx.Client,
                                                             api_env: ApiEnv,
                                                             subdir: str) -> None:
    who = "refused-" + secrets.token_hex(3)
    tid = client.post("/api/transfers", json={
        "sources": [f"s3://{api_env.bucket}/{subdir}/missing.csv"],
        "destination": f"t:{subdir}/", "options": {"requester": who}}).json()["transfer_id"]
    done = wait_for(client, tid)
    assert done["status"] == "REFUSED" and done["error"]["type"] == "SourceNotFound"
    assert done["files"] == []

    def ids(status: str) -> list[str]:
        page = client.get("/api/transfers", params={"requester": who, "status": status})
        return [t["transfer_id"] for t in page.json()["data"]]

    assert ids("REFUSED") == [tid] and ids("FAILED") == []
