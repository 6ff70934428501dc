"""The API with ``sso:``: real tokens from the sandbox provider, a real uvicorn server over
moto's S3 and sshd. Bad tokens are 401s naming why; the requester is the token's user;
a policy denial is a 403; approvals over the API (self-approval and non-members 403);
the dashboard's session cookie from the code flow (HttpOnly, Lax, CSRF-checked)."""

from __future__ import annotations

import secrets
import subprocess
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric import rsa

from fileferry.sandbox.net import free_port
from fileferry.store import open_store
from tests.api.conftest import TOKEN, SsoEnv, wait_for
from tests.helpers import cli_command, cli_env, seed, sha256_bytes


def _send(env: SsoEnv, s3: Any, user: str, folder: str, **options: Any) -> httpx.Response:
    sub = f"{folder}/{secrets.token_hex(4)}"
    seed(s3, env.bucket, {f"{sub}/f.bin": b"ledger " + secrets.token_bytes(3000)})
    with env.client(user) as http:
        return http.post("/api/transfers", json={
            "sources": [f"s3://{env.bucket}/{sub}/f.bin"], "destination": f"t:{sub}/",
            **({"options": options} if options else {})})


def _pending(env: SsoEnv, s3: Any, user: str) -> str:
    answer = _send(env, s3, user, "reviewed")
    assert answer.status_code == 202, answer.text
    tid: str = answer.json()["transfer_id"]
    with env.client(user) as http:
        wait_for(http, tid, lambda t: t["status"] == "PENDING_APPROVAL")
    return tid


def test_only_healthz_is_open(sso_env: SsoEnv) -> None:
    with sso_env.client() as http:
        assert http.get("/healthz").status_code == 200
        for path in ("/api/transfers", "/api/destinations", "/metrics", "/api/events"):
            answer = http.get(path)
            assert answer.status_code == 401, path
            assert answer.headers["www-authenticate"].startswith("Bearer")
        shared = http.get("/api/transfers", headers={"Authorization": f"Bearer {TOKEN}"})
    assert shared.status_code == 401, "with sso: the shared api.token is not accepted"
    assert "malformed" in shared.json()["error"]["message"]


def _bad_tokens(idp: Any) -> dict[str, tuple[str, str]]:
    alice = idp.claims_for("alice")
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return {
        "expired": (idp.mint(user="alice", expires_in=-120), "expired"),
        "audience": (idp.mint(user="alice", audience="someone-else"), "wrong audience"),
        "issuer": (idp.mint(user="alice", iss="http://127.0.0.1:9/other"), "wrong issuer"),
        "signature": (idp.mint(user="alice", key=stranger), "bad signature"),
        "alg-none": (idp.mint_unsigned(alice), "algorithm not allowed"),
        "hmac": (idp.mint_hmac_with_public_key(alice), "algorithm not allowed"),
    }


@pytest.mark.parametrize("case", ["expired", "audience", "issuer", "signature", "alg-none",
                                  "hmac"])
def test_bad_tokens_are_401_naming_why(sso_env: SsoEnv, case: str) -> None:
    token, reason = _bad_tokens(sso_env.idp)[case]
    with sso_env.client(token=token) as http:
        answer = http.get("/api/transfers")
    assert answer.status_code == 401
    message = answer.json()["error"]["message"]
    assert reason in message
    assert token not in answer.text and token.split(".")[1] not in answer.text


def test_a_transfer_is_requested_by_the_token_user(sso_env: SsoEnv, s3: Any) -> None:
    answer = _send(sso_env, s3, "alice", "direct", requester="mallory")
    assert answer.status_code == 202, answer.text
    assert answer.json()["requester"] == "alice", "options.requester is ignored with sso"
    with sso_env.client("alice") as http:
        done = wait_for(http, answer.json()["transfer_id"])
        assert done["status"] == "SUCCEEDED", done
        mine = http.get("/api/transfers", params={"requester": "alice"}).json()["data"]
    assert done["transfer_id"] in {t["transfer_id"] for t in mine}
    [file] = done["files"]
    delivered = Path(file["destination"])
    assert delivered.is_relative_to(sso_env.remote)
    assert sha256_bytes(delivered.read_bytes()) == file["sha256"]


def test_a_policy_denial_is_403_naming_the_rules(sso_env: SsoEnv, s3: Any) -> None:
    answer = _send(sso_env, s3, "carol", "direct")
    assert answer.status_code == 403, answer.text
    error = answer.json()["error"]
    assert error["type"] == "PolicyDenied"
    assert "rule 'finance-direct'" in error["message"] and "carol" in error["message"]
    tid = error["message"].split(":")[0]
    with sso_env.client("carol") as http:
        refused = wait_for(http, tid)
    assert refused["status"] == "REFUSED" and refused["error"]["type"] == "PolicyDenied"
    assert refused["tickets"], "a denial still gets its audit ticket"


def test_approve_over_the_api(sso_env: SsoEnv, s3: Any) -> None:
    tid = _pending(sso_env, s3, "alice")
    with sso_env.client("alice") as alice, sso_env.client("carol") as carol, \
            sso_env.client("bob") as bob:
        own = alice.post(f"/api/transfers/{tid}/approve", json={"reason": "mine"})
        assert own.status_code == 403 and "cannot decide" in own.json()["error"]["message"]
        assert alice.get(f"/api/transfers/{tid}/approval").json()["can_decide"] is False
        other = carol.post(f"/api/transfers/{tid}/approve")
        assert other.status_code == 403
        assert "finance-approvers" in other.json()["error"]["message"]
        shown = bob.get(f"/api/transfers/{tid}/approval").json()
        assert shown["can_decide"] is True and shown["requester"] == "alice"
        assert bob.post(f"/api/transfers/{tid}/approve",
                        json={"reason": "checked"}).status_code == 202
        done = wait_for(bob, tid)
        assert done["status"] == "SUCCEEDED", done
        again = bob.post(f"/api/transfers/{tid}/reject")
        assert again.status_code == 409 and again.json()["error"]["type"] == "NotPending"


async def test_reject_over_the_api(sso_env: SsoEnv, s3: Any) -> None:
    tid = _pending(sso_env, s3, "alice")
    with sso_env.client("bob") as bob:
        answer = bob.post(f"/api/transfers/{tid}/reject", json={"reason": "wrong month"})
        assert answer.status_code == 202, answer.text
        done = wait_for(bob, tid)
    assert done["status"] == "REFUSED" and done["error"]["type"] == "ApprovalRejected"
    store = open_store(sso_env.store_url)
    try:
        audit = [e for e in await store.audit(tid)
                 if e.event in ("rejected", "approval_refused")]
    finally:
        await store.close()
    assert [e.event for e in audit] == ["rejected"]
    assert audit[0].detail["approver"] == "bob"


def _sign_in(env: SsoEnv, http: httpx.Client, user: str) -> httpx.Response:
    """The authorization-code flow without a browser: /login, the provider's form, back."""
    to_idp = http.get("/login", params={"next": "/#/x"})
    assert to_idp.status_code == 303
    query = {k: v[0] for k, v in parse_qs(urlsplit(to_idp.headers["location"]).query).items()}
    assert query["code_challenge_method"] == "S256" and query["state"] and query["nonce"]
    form = httpx.post(f"{env.idp.issuer}/authorize",
                      data={**query, "username": user, "password": f"{user}-pw"})
    assert form.status_code == 302
    return http.get(form.headers["location"])


def test_the_session_cookie_and_its_csrf_token(sso_env: SsoEnv) -> None:
    with sso_env.client() as http:
        back = _sign_in(sso_env, http, "bob")
        assert back.status_code == 303 and back.headers["location"] == "/#/x"
        cookie = next(c for c in back.headers.get_list("set-cookie")
                      if c.startswith("ff_session="))
        flags = {part.strip().lower() for part in cookie.split(";")}
        assert {"httponly", "samesite=lax", "path=/"} <= flags
        assert "secure" not in flags, "plain http on 127.0.0.1: no Secure (documented)"
        session = http.get("/auth/session").json()
        assert session["user"] == "bob" and "finance-approvers" in session["groups"]
        assert http.get("/api/transfers").status_code == 200
        tid = "tr-" + "0" * 16
        blind = http.post(f"/api/transfers/{tid}/cancel")
        assert blind.status_code == 403 and "CSRF" in blind.json()["error"]["message"]
        checked = http.post(f"/api/transfers/{tid}/cancel",
                            headers={"X-CSRF-Token": session["csrf"]})
        assert checked.status_code == 404, "past the CSRF check: no such transfer"
        http.cookies.set("ff_session", http.cookies["ff_session"][:-2] + "xx")
        assert http.get("/api/transfers").status_code == 401
        http.get("/logout")
        assert http.get("/auth/session").json() == {"sso": True, "signed_in": False}


def test_a_callback_from_another_sign_in_is_refused(sso_env: SsoEnv) -> None:
    with sso_env.client() as http:
        http.get("/login")
        answer = http.get("/auth/callback", params={"code": "x", "state": "forged"})
    assert answer.status_code == 400 and "state does not match" in answer.text
    assert "ff_session" not in answer.headers.get("set-cookie", "")


def test_fileferry_serve_uses_sso(sso_env: SsoEnv, tmp_path: Path) -> None:
    """`fileferry serve` with sso: in a child process: JWTs in, the shared token out."""
    data = yaml.safe_load(sso_env.config.read_text(encoding="utf-8"))
    data["store"] = {"url": f"sqlite:///{tmp_path}/serve.db"}
    config = tmp_path / "serve.yaml"
    config.write_text(yaml.safe_dump(data), encoding="utf-8")
    port = free_port()
    child = subprocess.Popen(cli_command("serve", "--config", config, "--port", str(port)),
                             cwd=tmp_path, env=cli_env(None), stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            deadline = time.monotonic() + 30
            while not _up(http):
                assert child.poll() is None and time.monotonic() < deadline, "never started"
                time.sleep(0.1)
            jwt = {"Authorization": f"Bearer {sso_env.idp.mint(user='alice')}"}
            assert http.get("/api/transfers", headers=jwt).status_code == 200
            shared = {"Authorization": f"Bearer {TOKEN}"}
            assert http.get("/api/transfers", headers=shared).status_code == 401
    finally:
        child.terminate()
        _, err = child.communicate(timeout=30)
    assert "SSO: bearer JWTs from" in err


def _up(http: httpx.Client) -> bool:
    try:
        return http.get("/healthz").status_code == 200
    except httpx.TransportError:
        return False
