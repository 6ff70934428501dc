"""The sandbox OIDC provider's flows over HTTP: PKCE code flow, password, client credentials."""

from __future__ import annotations

import hashlib
import secrets
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from fileferry.identity.settings import SsoSettings
from fileferry.identity.tokens import TokenVerifier
from fileferry.sandbox.oidc import OidcProvider, b64url
from tests.conftest import OIDC_CLIENT_SECRET as CLIENT_SECRET
from tests.conftest import OIDC_REDIRECT as DASHBOARD_REDIRECT


@pytest.fixture
def sso(oidc: OidcProvider) -> SsoSettings:
    return SsoSettings(issuer=oidc.issuer, audience=oidc.audience)


def authorize(oidc: OidcProvider, challenge: str, **extra: str) -> requests.Response:
    params = {"response_type": "code", "client_id": "dashboard",
              "redirect_uri": DASHBOARD_REDIRECT, "code_challenge": challenge,
              "code_challenge_method": "S256", "state": "st-1", "nonce": "n-1", **extra}
    return requests.get(f"{oidc.issuer}/authorize", params=params, allow_redirects=False,
                        timeout=5)


def test_authorization_code_with_pkce(oidc: OidcProvider, sso: SsoSettings) -> None:
    verifier = secrets.token_urlsafe(48)
    challenge = b64url(hashlib.sha256(verifier.encode()).digest())
    answer = authorize(oidc, challenge)
    assert answer.status_code == 302
    back = urlsplit(answer.headers["Location"])
    query = {k: v[0] for k, v in parse_qs(back.query).items()}
    assert back.geturl().startswith(DASHBOARD_REDIRECT) and query["state"] == "st-1"
    form = {"grant_type": "authorization_code", "code": query["code"], "client_id": "dashboard",
            "redirect_uri": DASHBOARD_REDIRECT}
    wrong = requests.post(f"{oidc.issuer}/token", data={**form, "code_verifier": "nope"},
                          timeout=5)
    assert wrong.status_code == 400 and wrong.json()["error"] == "invalid_grant"
    # the failed attempt used the code up: codes are single-use
    again = requests.post(f"{oidc.issuer}/token", data={**form, "code_verifier": verifier},
                          timeout=5)
    assert again.status_code == 400
    answer = authorize(oidc, challenge)
    code = parse_qs(urlsplit(answer.headers["Location"]).query)["code"][0]
    tokens = requests.post(f"{oidc.issuer}/token", data={**form, "code": code,
                                                          "code_verifier": verifier},
                           timeout=5).json()
    assert TokenVerifier(sso).verify(tokens["access_token"]).user == "alice"
    id_sso = SsoSettings(issuer=oidc.issuer, audience="dashboard")
    assert TokenVerifier(id_sso).claims(tokens["id_token"])["nonce"] == "n-1"


def test_authorize_refuses_without_pkce_or_with_a_foreign_redirect(oidc: OidcProvider) -> None:
    answer = authorize(oidc, "", code_challenge_method="plain")
    assert "error=invalid_request" in answer.headers["Location"]
    foreign = authorize(oidc, "x", redirect_uri="https://evil.example/cb")
    assert foreign.status_code == 400 and "Location" not in foreign.headers


def test_login_form_when_nobody_is_signed_in_automatically(oidc: OidcProvider) -> None:
    oidc.auto_login = None
    try:
        page = authorize(oidc, "abc")
        assert page.status_code == 200 and "name='password'" in page.text
        form = {"response_type": "code", "client_id": "dashboard",
                "redirect_uri": DASHBOARD_REDIRECT, "code_challenge": "abc",
                "code_challenge_method": "S256", "state": "s"}
        bad = requests.post(f"{oidc.issuer}/authorize", allow_redirects=False, timeout=5,
                            data={**form, "username": "bob", "password": "wrong"})
        assert bad.status_code == 200 and "wrong user name or password" in bad.text
        good = requests.post(f"{oidc.issuer}/authorize", allow_redirects=False, timeout=5,
                             data={**form, "username": "bob", "password": "bob-pw"})
        assert good.status_code == 302 and "code=" in good.headers["Location"]
    finally:
        oidc.auto_login = "alice"


def test_password_and_client_credentials_grants(oidc: OidcProvider, sso: SsoSettings) -> None:
    verifier = TokenVerifier(sso)
    password = requests.post(f"{oidc.issuer}/token", timeout=5, data={
        "grant_type": "password", "client_id": "dashboard", "username": "carol",
        "password": "carol-pw"}).json()
    assert verifier.verify(password["access_token"]).groups == {"ops"}
    robot = requests.post(f"{oidc.issuer}/token", timeout=5, auth=("robot", CLIENT_SECRET),
                          data={"grant_type": "client_credentials"}).json()
    assert verifier.verify(robot["access_token"]).user == "robot"
    denied = requests.post(f"{oidc.issuer}/token", timeout=5, auth=("robot", "wrong"),
                           data={"grant_type": "client_credentials"})
    assert denied.status_code == 401
