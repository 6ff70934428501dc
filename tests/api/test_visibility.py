"""With ``sso:`` each user sees only what they may (identity/visibility.py), over the real
server with tokens from the sandbox provider: alice (finance) requests, bob (finance,
finance-approvers) approves, carol (ops) is an outsider, dave (ff-operators) an
operator. Without ``sso:`` the shared token still sees everything."""

from __future__ import annotations

import secrets
import threading
import time
from typing import Any

import httpx
import pytest

from tests.api.conftest import SsoEnv, sse_events, wait_for
from tests.helpers import seed


def _start(env: SsoEnv, s3: Any, user: str, folder: str) -> str:
    """``user`` sends one small object from ``folder/`` (direct: no approval; reviewed:
    finance-approvers decide); the transfer id (a policy denial is recorded too)."""
    sub = f"{folder}/vis-{secrets.token_hex(4)}"
    seed(s3, env.bucket, {f"{sub}/f.csv": b"a,b\n" + secrets.token_hex(200).encode()})
    with env.client(user) as http:
        answer = http.post("/api/transfers", json={
            "sources": [f"s3://{env.bucket}/{sub}/f.csv"], "destination": f"t:{sub}/"})
    assert answer.status_code in (202, 403), answer.text
    if answer.status_code == 403:  # PolicyDenied names the recorded transfer first
        return answer.json()["error"]["message"].split(":")[0]
    tid: str = answer.json()["transfer_id"]
    return tid


def _settled(env: SsoEnv, user: str, tid: str, status: str | None = None) -> dict[str, Any]:
    with env.client(user) as http:
        if status is None:
            return wait_for(http, tid)
        return wait_for(http, tid, lambda t: t["status"] == status)


def _listed(http: httpx.Client, **params: Any) -> set[str]:
    """Every transfer id of the list, following next_cursor with small pages."""
    ids, cursor = set(), None
    while True:
        answer = http.get("/api/transfers", params={**params, "limit": 2,
                                                    **({"cursor": cursor} if cursor else {})})
        assert answer.status_code == 200, answer.text
        page = answer.json()
        ids |= {t["transfer_id"] for t in page["data"]}
        cursor = page["next_cursor"]
        if cursor is None:
            return ids


@pytest.fixture(scope="module")
def alice_direct(sso_env: SsoEnv, s3: Any) -> str:
    """A transfer of alice's that needed no approval, finished."""
    tid = _start(sso_env, s3, "alice", "direct")
    assert _settled(sso_env, "alice", tid)["status"] == "SUCCEEDED"
    return tid


@pytest.fixture(scope="module")
def alice_pending(sso_env: SsoEnv, s3: Any) -> str:
    """A transfer of alice's waiting for finance-approvers."""
    tid = _start(sso_env, s3, "alice", "reviewed")
    _settled(sso_env, "alice", tid, "PENDING_APPROVAL")
    return tid


def test_a_user_lists_only_their_own(sso_env: SsoEnv, s3: Any, alice_direct: str,
                                     alice_pending: str) -> None:
    bobs = [_start(sso_env, s3, "bob", "direct") for _ in range(3)]
    with sso_env.client("bob") as bob, sso_env.client("alice") as alice, \
            sso_env.client("dave") as dave:
        mine = _listed(bob)
        assert set(bobs) <= mine and alice_direct not in mine and alice_pending not in mine
        for tid in mine:  # every one bob's own, whatever the page
            assert bob.get(f"/api/transfers/{tid}").json()["requester"] == "bob"
        assert _listed(bob, requester="bob") == mine
        other = bob.get("/api/transfers", params={"requester": "alice"})
        assert other.status_code == 403
        error = other.json()["error"]
        assert error["type"] == "NotAuthorized" and error["fields"][0]["field"] == "requester"
        assert "only their own" in error["message"] and "ff-operators" in error["message"]
        assert {alice_direct, alice_pending} <= _listed(alice)
        assert not set(bobs) & _listed(alice)
        everyone = _listed(dave)
        assert {alice_direct, alice_pending, *bobs} <= everyone
        assert _listed(dave, requester="alice") >= {alice_direct, alice_pending}
        assert not set(bobs) & _listed(dave, requester="alice")


def test_someone_elses_transfer_is_not_found(sso_env: SsoEnv, alice_direct: str,
                                             alice_pending: str) -> None:
    unknown = "tr-" + secrets.token_hex(8)
    for user, tid in (("bob", alice_direct), ("carol", alice_direct),
                      ("carol", alice_pending)):
        with sso_env.client(user) as http:
            answers = [http.get(f"/api/transfers/{tid}"),
                       http.get(f"/api/transfers/{tid}/approval"),
                       http.post(f"/api/transfers/{tid}/cancel")]
            with http.stream("GET", f"/api/transfers/{tid}/events") as events:
                answers.append(events)
                events.read()
            unknown_body = http.get(f"/api/transfers/{unknown}").json()
        for answer in answers:
            assert answer.status_code == 404, (user, tid, answer.request.url)
            body = answer.json()["error"]["message"]
            assert body == unknown_body["error"]["message"].replace(unknown, tid), \
                "the same answer as for an id nobody uses"


def test_an_approver_reads_but_does_not_cancel(sso_env: SsoEnv, alice_pending: str) -> None:
    with sso_env.client("bob") as bob, sso_env.client("carol") as carol:
        shown = bob.get(f"/api/transfers/{alice_pending}")
        assert shown.status_code == 200 and shown.json()["history"], shown.text
        assert bob.get(f"/api/transfers/{alice_pending}/approval").json()["can_decide"]
        waiting = bob.get("/api/approvals").json()["data"]
        mine = next(a for a in waiting if a["transfer_id"] == alice_pending)
        assert mine["group"] == "finance-approvers" and mine["can_decide"] is True
        assert [a["requested_at"] for a in waiting] == sorted(
            (a["requested_at"] for a in waiting), reverse=True), "newest first"
        cancel = bob.post(f"/api/transfers/{alice_pending}/cancel")
        assert cancel.status_code == 403, cancel.text
        error = cancel.json()["error"]
        assert error["type"] == "NotAuthorized"
        assert "only its requester (alice)" in error["message"]
        assert "ff-operators" in error["message"]
        assert alice_pending not in {a["transfer_id"] for a in
                                     carol.get("/api/approvals").json()["data"]}
    with sso_env.client("alice") as alice:
        own = next(a for a in alice.get("/api/approvals").json()["data"]
                   if a["transfer_id"] == alice_pending)
        assert own["can_decide"] is False and "requested it" in own["why_not"]
        assert alice.get(f"/api/transfers/{alice_pending}").json()[
            "cancel_requested"] is False, "bob's refused cancel changed nothing"


def test_an_operator_sees_and_cancels_everything(sso_env: SsoEnv, s3: Any,
                                                 alice_direct: str) -> None:
    tid = _start(sso_env, s3, "alice", "reviewed")
    _settled(sso_env, "alice", tid, "PENDING_APPROVAL")
    with sso_env.client("dave") as dave:
        assert dave.get(f"/api/transfers/{alice_direct}").json()["files"]
        shown = next(a for a in dave.get("/api/approvals").json()["data"]
                     if a["transfer_id"] == tid)
        assert shown["can_decide"] is False, "seeing everything is not deciding"
        assert "finance-approvers" in shown["why_not"]
        assert dave.post(f"/api/transfers/{tid}/cancel").status_code == 202
    done = _settled(sso_env, "alice", tid)
    assert done["status"] == "CANCELLED", done


def _listen(env: SsoEnv, user: str, seen: list[dict[str, Any]],
            ready: threading.Event) -> None:
    """Collect ``user``'s all-transfers stream until one of their own transfers ends
    (each user's last transfer in the test is that sentinel)."""
    with env.client(user) as http, http.stream("GET", "/api/events", timeout=90) as stream:
        ready.set()
        for _, data in sse_events(stream):
            seen.append(data["transfer"])
            if data["final"] and data["transfer"]["requester"] == user:
                return


def test_the_event_stream_carries_only_what_one_may_see(sso_env: SsoEnv, s3: Any) -> None:
    """bob's stream has his own transfer and the status of alice's transfer waiting for
    his group, none of alice's others; carol's only hers; dave's everyone's."""
    streams: dict[str, list[dict[str, Any]]] = {u: [] for u in ("bob", "carol", "dave")}
    readers = []
    for user, seen in streams.items():
        ready = threading.Event()
        reader = threading.Thread(target=_listen, args=(sso_env, user, seen, ready),
                                  daemon=True)
        reader.start()
        assert ready.wait(10)
        readers.append(reader)
    time.sleep(0.3)  # the server subscribes right after it sent the headers
    direct = _start(sso_env, s3, "alice", "direct")
    _settled(sso_env, "alice", direct)
    pending = _start(sso_env, s3, "alice", "reviewed")
    _settled(sso_env, "alice", pending, "PENDING_APPROVAL")
    own = {}
    for user in ("bob", "carol", "dave"):  # dave (not in finance: refused) ends last
        own[user] = _start(sso_env, s3, user, "direct")
        _settled(sso_env, user, own[user])
    for reader in readers:
        reader.join(60)
        assert not reader.is_alive(), {u: len(s) for u, s in streams.items()}
    seen = {user: {t["transfer_id"] for t in events} for user, events in streams.items()}
    assert {direct, pending, *own.values()} <= seen["dave"]
    assert own["bob"] in seen["bob"] and direct not in seen["bob"]
    assert {t["transfer_id"] for t in streams["bob"] if t["requester"] != "bob"} <= {pending}
    assert any(t["transfer_id"] == pending and t["status"] == "PENDING_APPROVAL"
               for t in streams["bob"]), "the approver hears of what waits for his group"
    assert seen["carol"] == {own["carol"]}


def test_without_sso_the_token_sees_everything(client: httpx.Client, api_env: Any, s3: Any,
                                               subdir: str) -> None:
    """Local mode is unchanged: the shared token lists, reads and names any requester."""
    seed(s3, api_env.bucket, {f"{subdir}/a.csv": b"a\n"})
    who = [f"{name}-{secrets.token_hex(3)}" for name in ("erin", "frank")]
    ids = []
    for requester in who:
        answer = client.post("/api/transfers", json={
            "sources": [f"s3://{api_env.bucket}/{subdir}/a.csv"],
            "destination": f"t:{subdir}/{requester}/", "options": {"requester": requester}})
        assert answer.status_code == 202, answer.text
        ids.append(answer.json()["transfer_id"])
    for tid in ids:
        assert wait_for(client, tid)["status"] == "SUCCEEDED"
    assert set(ids) <= _listed(client)
    assert _listed(client, requester=who[1]) == {ids[1]}
    waiting = client.get("/api/approvals")
    assert waiting.status_code == 200 and waiting.json()["count"] == len(waiting.json()["data"])


@pytest.mark.parametrize(("user", "operator"), [("dave", True), ("bob", False)])
def test_the_dashboard_session_says_who_sees_everything(sso_env: SsoEnv, user: str,
                                                        operator: bool) -> None:
    """The dashboard lists everyone's transfers only for an operator (it asks /auth/session)."""
    from tests.api.test_sso_api import _sign_in

    with sso_env.client() as http:
        assert _sign_in(sso_env, http, user).status_code == 303
        session = http.get("/auth/session").json()
    assert session["user"] == user and session["operator"] is operator
