"""SSO on the API: bearer JWTs from the identity provider, and the dashboard's session cookie.

With ``sso:`` configured the server accepts two credentials:

* ``Authorization: Bearer <JWT>`` (scripts, the CLI's ``--api``): checked with
  :func:`fileferry.identity.tokens.authenticate` on every request;
* the ``ff_session`` cookie the dashboard gets from ``/auth/callback``: the
  principal (user, groups) the provider's token proved, with its expiry and a
  CSRF token, signed with a key only this server holds (itsdangerous, HMAC-SHA256).

The cookie is HttpOnly, SameSite=Lax, Secure unless the request came over plain
http to a loopback host (the sandbox), and lives ``sso.session_seconds`` at most
and never past the provider's token. Because a Lax cookie still rides along on
top-level cross-site navigations and a browser sends cookies with any form
post, every state-changing request (not GET/HEAD/OPTIONS) authenticated by the
cookie must repeat the session's CSRF token in ``X-CSRF-Token`` (the dashboard
reads it from ``/auth/session``, which another origin cannot read). A bearer
request needs no CSRF token: a browser never adds that header on its own.

The signing key is ``sso-session-key`` beside the API token file (0600, made on
first start); replacing it signs everyone out.
"""

from __future__ import annotations

import asyncio
import hmac
import secrets
import time
from dataclasses import dataclass
from typing import Any

from fastapi import HTTPException, Request
from itsdangerous import BadSignature, URLSafeSerializer

from fileferry.api.auth import default_token_file, owner_only_secret
from fileferry.config import Settings
from fileferry.errors import InvalidToken
from fileferry.identity.principal import Principal
from fileferry.identity.settings import SsoSettings
from fileferry.identity.tokens import authenticate

__all__ = ["CSRF_HEADER", "LOGIN_COOKIE", "SESSION_COOKIE", "CookieSigner", "OidcAuthenticator",
           "Session", "cookie_is_secure", "session_key"]

SESSION_COOKIE = "ff_session"
LOGIN_COOKIE = "ff_login"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})


def session_key(settings: Settings) -> str:
    """The cookie signing key: ``sso-session-key`` beside the API token file (0600)."""
    return owner_only_secret(default_token_file(settings).parent / "sso-session-key")[0]


def cookie_is_secure(request: Request) -> bool:
    """Secure cookies, except over plain http to a loopback host (the sandbox), where a
    Secure cookie would never come back. A server behind a TLS proxy sees its public
    host name and so still sets Secure."""
    return not (request.url.scheme == "http" and request.url.hostname in _LOOPBACK)


@dataclass(frozen=True)
class Session:
    """What the session cookie holds: who, until when, and the CSRF token."""

    user: str
    groups: frozenset[str]
    expires: float
    csrf: str

    @property
    def principal(self) -> Principal:
        return Principal(user=self.user, groups=self.groups, source="sso")


class CookieSigner:
    """Signs and checks the session and login cookies (expiry is inside the signed value,
    so a cookie kept past its Max-Age is refused too)."""

    def __init__(self, key: str) -> None:
        self._session = URLSafeSerializer(key, salt="fileferry.session")
        self._login = URLSafeSerializer(key, salt="fileferry.login")

    def session(self, principal: Principal, expires: float) -> tuple[str, Session]:
        """A new session for ``principal`` (a fresh CSRF token) and its cookie value."""
        made = Session(principal.user, principal.groups, expires, secrets.token_urlsafe(24))
        value = self._session.dumps({"u": made.user, "g": sorted(made.groups),
                                     "e": made.expires, "c": made.csrf})
        return value, made

    def read_session(self, value: str, now: float) -> Session:
        """The session in a cookie; InvalidToken when forged, damaged or expired."""
        data = self._load(self._session, value, "session cookie")
        try:
            made = Session(str(data["u"]), frozenset(str(g) for g in data["g"]),
                           float(data["e"]), str(data["c"]))
        except (KeyError, TypeError, ValueError):
            raise InvalidToken.because("malformed", "session cookie") from None
        if made.expires <= now:
            raise InvalidToken.because("expired", "the dashboard session ended")
        return made

    def login(self, data: dict[str, Any]) -> str:
        return self._login.dumps(data)

    def read_login(self, value: str) -> dict[str, Any]:
        return self._load(self._login, value, "sign-in cookie")

    @staticmethod
    def _load(serializer: URLSafeSerializer, value: str, what: str) -> dict[str, Any]:
        try:
            data = serializer.loads(value)
        except BadSignature:
            raise InvalidToken.because("bad signature", what) from None
        if not isinstance(data, dict):
            raise InvalidToken.because("malformed", what)
        return data


def _bearer(request: Request) -> str | None:
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    return (value.strip() or None) if scheme.lower() == "bearer" else None


class OidcAuthenticator:
    """The :class:`fileferry.api.auth.Authenticator` for ``sso:``: a bearer JWT when the
    request has one (a bad one is refused, never passed over for the cookie), else the
    session cookie, with the CSRF check on state-changing requests."""

    def __init__(self, sso: SsoSettings, signer: CookieSigner) -> None:
        self.sso, self.signer = sso, signer

    async def authenticate(self, request: Request) -> Principal | None:
        token = _bearer(request)
        if token is not None:
            # the first call fetches the JWKS (blocking): keep it off the event loop
            return await asyncio.to_thread(authenticate, self.sso, token)
        cookie = request.cookies.get(SESSION_COOKIE)
        if cookie is None:
            return None
        session = self.signer.read_session(cookie, time.time())
        if request.method not in SAFE_METHODS:
            given = request.headers.get(CSRF_HEADER, "")
            if not hmac.compare_digest(given.encode(), session.csrf.encode()):
                raise HTTPException(403, detail=f"CSRF check failed: a request signed in by "
                                    f"the session cookie must send {CSRF_HEADER} (the "
                                    "dashboard reads it from /auth/session)")
        return session.principal
