"""``POST /api/chat`` over real HTTP (the session's API server: moto S3, sshd, the
ServiceNow emulator; no agent.model_id, so the offline planner answers)."""

from __future__ import annotations

import re
import secrets
from typing import Any

import httpx

from tests.api.conftest import ApiEnv, wait_for
from tests.helpers import seed
from tests.transfer.test_engine_sftp import tree


def chat(client: httpx.Client, session: str, **body: Any) -> dict[str, Any]:
    answer = client.post("/api/chat", json={"session_id": session, **body})
    assert answer.status_code == 200, answer.text
    reply: dict[str, Any] = answer.json()
    return reply


def test_plan_confirm_and_follow(client: httpx.Client, api_env: ApiEnv, s3: Any,
                                 subdir: str) -> None:
    seed(s3, api_env.bucket, {f"{subdir}/a.csv": b"a" * 700, f"{subdir}/b.csv": b"b" * 300})
    session = "web-" + secrets.token_hex(4)
    planned = chat(client, session,
                   message=f"send s3://{api_env.bucket}/{subdir}/ to t:{subdir}/")
    plan = planned["plan"]
    assert plan["count"] == 2 and plan["total_bytes"] == 1000, planned
    assert planned["agent"] == "offline" and planned["transfer"] is None
    # Another session (or a stale id) cannot confirm it.
    other = chat(client, "web-other-" + secrets.token_hex(4), confirm=plan["plan_id"])
    assert other["transfer"] is None and other["text"].startswith("There is no plan waiting")
    started = chat(client, session, confirm=plan["plan_id"])
    transfer = started["transfer"]
    assert transfer["status"] == "PENDING"
    assert transfer["events"] == f"/api/transfers/{transfer['transfer_id']}/events"
    done = wait_for(client, transfer["transfer_id"])
    assert done["status"] == "SUCCEEDED", done["error"]
    assert done["requester"] == "api" and done["sources"] == [
        f"s3://{api_env.bucket}/{subdir}/"]
    assert re.fullmatch(r"INC\d+", done["tickets"]["user"]), done["tickets"]
    assert started["text"].startswith(f"Tickets: user {done['tickets']['user']}, audit "
                                      f"{done['tickets']['audit']}.")
    assert tree(api_env.remote / subdir) == {"a.csv": b"a" * 700, "b.csv": b"b" * 300}
    status = chat(client, session, message=f"status of {transfer['transfer_id']}")
    assert status["transfer"]["status"] == "SUCCEEDED"
    again = chat(client, session, confirm=plan["plan_id"])
    assert again["transfer"] is None  # a plan runs once


def test_bad_chat_requests_are_4xx(client: httpx.Client, api_server: Any) -> None:
    assert httpx.post(f"{api_server.url}/api/chat",
                      json={"session_id": "s", "message": "hi"}).status_code == 401
    for body, field in [({"session_id": "s"}, "message"),
                        ({"session_id": "../x", "message": "hi"}, "session_id"),
                        ({"session_id": "s", "confirm": "yes"}, "confirm"),
                        ({"session_id": "s", "message": "x" * 4001}, "message"),
                        ({"session_id": "s", "message": "hi", "as": "root"}, "as")]:
        answer = client.post("/api/chat", json=body)
        assert answer.status_code == 422, (body, answer.text)
        assert field in answer.text
    refused = chat(client, "s", message="send s3://x/y/ to nowhere:")
    assert refused["text"].startswith("Refused: unknown destination 'nowhere'")
