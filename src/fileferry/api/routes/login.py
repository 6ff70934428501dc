"""The dashboard's sign-in: the authorization-code flow with PKCE, the server as the client.

* ``GET /login[?next=/#/…]`` redirects to the provider's ``authorization_endpoint``
  with ``state``, ``nonce`` and an S256 ``code_challenge``; the verifier, state and
  nonce go into a signed, HttpOnly cookie scoped to ``/auth/`` for 10 minutes (the
  server keeps no sign-in state, so any worker can finish it).
* ``GET /auth/callback`` checks ``state``, exchanges the code with the verifier (and
  ``sso.client_secret`` when set), checks the access token with ``authenticate``
  and the ID token's audience (``sso.client_id``) and nonce, then sets the session
  cookie (see :mod:`fileferry.api.sso`) and redirects to ``next``.
* ``GET|POST /logout`` clears it. ``GET /auth/session`` tells the dashboard whether
  SSO is on, who is signed in and the CSRF token (same-origin reads only).

These routes are open (they are how one gets a credential); without ``sso:``
they answer 404.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

import httpx
from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse

from fileferry.api.errors import ApiError
from fileferry.api.sso import (
    LOGIN_COOKIE,
    SESSION_COOKIE,
    CookieSigner,
    cookie_is_secure,
)
from fileferry.errors import InvalidToken
from fileferry.identity.principal import Principal
from fileferry.identity.settings import SsoSettings
from fileferry.identity.tokens import authenticate, fetch_json, verifier_for
from fileferry.identity.visibility import is_operator

__all__ = ["router"]

router = APIRouter(tags=["sign-in"], include_in_schema=False)
LOGIN_SECONDS = 600
_DISCOVERY: dict[str, Mapping[str, Any]] = {}


def _sso(request: Request) -> tuple[SsoSettings, CookieSigner]:
    sso: SsoSettings | None = request.app.state.ff.settings.sso
    signer: CookieSigner | None = getattr(request.app.state, "signer", None)
    if sso is None or signer is None:
        raise ApiError(404, "NotFound", "sso is not configured: sign in with the API token")
    if not sso.client_id:
        raise ApiError(404, "NotFound", "the dashboard's sign-in needs sso.client_id (the "
                       "client registered with the identity provider)")
    return sso, signer


async def _discovery(sso: SsoSettings) -> Mapping[str, Any]:
    """The provider's discovery document (cached for the process)."""
    issuer = sso.issuer.rstrip("/")
    if issuer not in _DISCOVERY:
        _DISCOVERY[issuer] = await asyncio.to_thread(
            fetch_json, f"{issuer}/.well-known/openid-configuration", sso.http_timeout)
    return _DISCOVERY[issuer]


def _redirect_url(sso: SsoSettings, request: Request) -> str:
    return sso.redirect_url or str(request.url_for("auth_callback"))


def _safe_next(value: str | None) -> str:
    """Only a path on this server (no ``//host`` or ``\\``): never an open redirect."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/"
    return value


def _challenge(verifier: str) -> str:
    """PKCE S256: base64url(sha256(verifier)) without padding (RFC 7636)."""
    digest = hashlib.sha256(verifier.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


@router.get("/login")
async def login(request: Request, next: str | None = None) -> RedirectResponse:
    sso, signer = _sso(request)
    endpoint = str((await _discovery(sso)).get("authorization_endpoint", ""))
    verifier, state, nonce = (secrets.token_urlsafe(48), secrets.token_urlsafe(24),
                              secrets.token_urlsafe(24))
    query = {"response_type": "code", "client_id": sso.client_id,
             "redirect_uri": _redirect_url(sso, request), "scope": "openid profile",
             "state": state, "nonce": nonce, "code_challenge_method": "S256",
             "code_challenge": _challenge(verifier)}
    response = RedirectResponse(f"{endpoint}?{urlencode(query)}", status_code=303)
    cookie = signer.login({"v": verifier, "s": state, "n": nonce, "x": _safe_next(next),
                           "e": time.time() + LOGIN_SECONDS})
    response.set_cookie(LOGIN_COOKIE, cookie, max_age=LOGIN_SECONDS, path="/auth/",
                        httponly=True, secure=cookie_is_secure(request), samesite="lax")
    return response


async def _exchange(sso: SsoSettings, request: Request, code: str,
                    verifier: str) -> Mapping[str, Any]:
    endpoint = str((await _discovery(sso)).get("token_endpoint", ""))
    form = {"grant_type": "authorization_code", "code": code, "code_verifier": verifier,
            "redirect_uri": _redirect_url(sso, request), "client_id": sso.client_id or ""}
    if sso.client_secret is not None:
        form["client_secret"] = sso.client_secret.get_secret_value()
    try:
        async with httpx.AsyncClient(timeout=sso.http_timeout, follow_redirects=False) as http:
            answer = await http.post(endpoint, data=form)
    except httpx.HTTPError as exc:
        raise ApiError(502, "EndpointUnavailable", f"cannot reach the identity provider's "
                       f"token endpoint: {type(exc).__name__}") from None
    data = answer.json() if answer.headers.get("content-type", "").startswith(
        "application/json") else {}
    if answer.status_code != 200 or "access_token" not in data:
        raise ApiError(401, "AuthenticationFailed", "the identity provider refused the code "
                       f"({data.get('error', answer.status_code)}); sign in again at /login")
    return dict(data)


def _check_id_token(sso: SsoSettings, id_token: str, nonce: str, sub: Any) -> None:
    """The ID token is for our client, from this sign-in (nonce), about the same user."""
    claims = verifier_for(sso.model_copy(update={"audience": sso.client_id})).claims(id_token)
    if not hmac.compare_digest(str(claims.get("nonce", "")), nonce):
        raise InvalidToken.because("wrong nonce", "the ID token is from another sign-in")
    if claims.get("sub") != sub:
        raise InvalidToken.because("wrong subject", "the ID and access tokens differ")


@router.get("/auth/callback", name="auth_callback")
async def callback(request: Request, code: str = "", state: str = "",
                   error: str = "") -> RedirectResponse:
    sso, signer = _sso(request)
    if error:
        raise ApiError(401, "AuthenticationFailed", f"the identity provider refused the "
                       f"sign-in ({error[:100]}); sign in again at /login")
    try:
        started = signer.read_login(request.cookies.get(LOGIN_COOKIE, ""))
    except InvalidToken:
        started = {}
    if float(started.get("e", 0)) <= time.time() or not code or not hmac.compare_digest(
            state.encode(), str(started.get("s", "")).encode()):
        raise ApiError(400, "BadRequest", "this sign-in is unknown, expired or from another "
                       "browser (state does not match); start again at /login")
    tokens = await _exchange(sso, request, code, str(started["v"]))
    principal = await asyncio.to_thread(authenticate, sso, str(tokens["access_token"]))
    if "id_token" in tokens:
        _check_id_token(sso, str(tokens["id_token"]), str(started["n"]),
                        principal.claims.get("sub"))
    expires = min(time.time() + sso.session_seconds, float(principal.claims["exp"]))
    value, _ = signer.session(principal, expires)
    response = RedirectResponse(_safe_next(str(started.get("x"))), status_code=303)
    response.set_cookie(SESSION_COOKIE, value, max_age=max(1, int(expires - time.time())),
                        path="/", httponly=True, secure=cookie_is_secure(request),
                        samesite="lax")
    response.delete_cookie(LOGIN_COOKIE, path="/auth/")
    return response


@router.api_route("/logout", methods=["GET", "POST"])
async def logout(request: Request) -> RedirectResponse:
    """Forget the session cookie (the provider's own session is left alone)."""
    response = RedirectResponse("/#/signed-out", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True,
                           secure=cookie_is_secure(request), samesite="lax")
    return response


@router.get("/auth/session")
async def session(request: Request) -> dict[str, Any]:
    """``{"sso": bool, "signed_in": bool[, "user", "groups", "expires", "csrf",
    "operator"]}``."""
    signer: CookieSigner | None = getattr(request.app.state, "signer", None)
    if request.app.state.ff.settings.sso is None or signer is None:
        return {"sso": False, "signed_in": False}
    cookie = request.cookies.get(SESSION_COOKIE)
    try:
        if cookie is None:
            raise InvalidToken("no session")
        made = signer.read_session(cookie, time.time())
    except InvalidToken:
        return {"sso": True, "signed_in": False}
    # operator: whether the dashboard's list shows everyone's transfers (visibility.py)
    operator = is_operator(request.app.state.ff.settings.sso,
                           Principal(user=made.user, groups=frozenset(made.groups)))
    return {"sso": True, "signed_in": True, "user": made.user, "groups": sorted(made.groups),
            "expires": made.expires, "csrf": made.csrf, "operator": operator}
