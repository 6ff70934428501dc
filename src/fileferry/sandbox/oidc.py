"""A small OpenID Connect provider on 127.0.0.1, for the tests and the demo.

Real HTTP, real RS256 signatures (PyJWT over ``cryptography``), keys made at
start::

    with OidcProvider(users={"alice": SandboxUser("pw", ["finance"])},
                      clients={"dashboard": SandboxClient(None, ["http://127.0.0.1:8000/cb"])},
                      auto_login="alice") as idp:
        idp.issuer                 # http://127.0.0.1:PORT
        idp.mint(user="alice")     # a valid access token for idp.audience
        idp.mint(user="alice", expires_in=-60)   # and deliberately bad ones

Endpoints: ``/.well-known/openid-configuration``, ``/jwks``, ``/authorize``
(authorization code with PKCE S256 only; signs ``auto_login`` in at once, or
shows a tiny login form) and ``/token`` (``authorization_code`` with the PKCE
verifier, ``client_credentials``, ``password``). Codes are single-use and live
60 seconds; redirects go only to a client's registered URIs.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import json
import secrets
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from fileferry.sandbox.http import HttpStandIn, LoopbackHttpServer, TrackedHandler

__all__ = ["OidcProvider", "SandboxClient", "SandboxUser", "b64url"]

CODE_SECONDS = 60.0


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass(frozen=True)
class SandboxUser:
    password: str
    groups: list[str] = field(default_factory=list)
    claims: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SandboxClient:
    secret: str | None  # None: a public client (PKCE alone)
    redirect_uris: list[str] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)  # for client_credentials tokens


@dataclass(frozen=True)
class _Code:
    client_id: str
    redirect_uri: str
    challenge: str
    user: str
    nonce: str | None
    expires: float


class _OAuthError(Exception):
    def __init__(self, error: str, description: str, status: int = 400) -> None:
        super().__init__(description)
        self.error, self.description, self.status = error, description, status


class _Server(LoopbackHttpServer):
    provider: OidcProvider


class _Handler(TrackedHandler):
    server: _Server

    def _send(self, status: int, body: bytes, kind: str, headers: Mapping[str, str] = {}) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def send_json(self, status: int, data: Any) -> None:
        self._send(status, json.dumps(data).encode(), "application/json")

    def send_html(self, status: int, text: str) -> None:
        self._send(status, text.encode(), "text/html; charset=utf-8")

    def redirect(self, location: str) -> None:
        self._send(302, b"", "text/plain", {"Location": location})

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        self.server.provider._get(self, parts.path, _flat(parts.query))

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        form = _flat(self.rfile.read(length).decode() if length else "")
        self.server.provider._post(self, urlsplit(self.path).path, form)


def _flat(query: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(query, keep_blank_values=True).items()}


class OidcProvider(HttpStandIn):
    """The provider; ``start()``/``stop()`` or use it as a context manager."""

    def __init__(self, *, users: Mapping[str, SandboxUser] | None = None,
                 clients: Mapping[str, SandboxClient] | None = None,
                 audience: str = "fileferry", auto_login: str | None = None,
                 token_seconds: int = 300, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__()
        self.users = dict(users or {})
        self.clients = dict(clients or {})
        self.audience = audience
        self.auto_login = auto_login
        self.token_seconds = token_seconds
        self._host, self._port = host, port
        self._keys: dict[str, rsa.RSAPrivateKey] = {}
        self._kid = self.rotate_key()
        self._codes: dict[str, _Code] = {}
        self._lock = threading.Lock()

    def _make_server(self) -> tuple[_Server, str]:
        server = _Server(_Handler, self._host, self._port)
        server.provider = self
        return server, "sandbox-oidc"

    @property
    def issuer(self) -> str:
        return f"http://{self._host}:{self.port}"

    # --- keys and tokens

    def rotate_key(self, *, drop_old: bool = False) -> str:
        """A new signing key becomes current (the old ones stay published unless dropped)."""
        if drop_old:
            self._keys.clear()
        kid = "k-" + secrets.token_hex(4)
        self._keys[kid] = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self._kid = kid
        return kid

    def jwks(self) -> dict[str, Any]:
        keys = []
        for kid, key in self._keys.items():
            jwk = RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
            keys.append({**jwk, "kid": kid, "alg": "RS256", "use": "sig"})
        return {"keys": keys}

    def public_pem(self) -> bytes:
        return self._keys[self._kid].public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)

    def claims_for(self, user: str, *, audience: str | None = None,
                   expires_in: float | None = None, **extra: Any) -> dict[str, Any]:
        """Standard claims for ``user`` (its groups and claims included) plus ``extra``."""
        now = int(time.time())
        known = self.users.get(user)
        claims: dict[str, Any] = {
            "iss": self.issuer, "aud": audience or self.audience, "sub": user,
            "preferred_username": user, "groups": list(known.groups) if known else [],
            "iat": now, "nbf": now,
            "exp": now + int(self.token_seconds if expires_in is None else expires_in)}
        if known:
            claims.update(known.claims)
        claims.update(extra)
        return claims

    def mint(self, claims: Mapping[str, Any] | None = None, *, user: str = "alice",
             kid: str | None = None, key: rsa.RSAPrivateKey | None = None,
             headers: Mapping[str, Any] | None = None, **overrides: Any) -> str:
        """A signed RS256 token: ``claims`` as given, else ``claims_for(user, **overrides)``.

        ``key`` signs with another key (a bad signature when ``kid`` names one of ours).
        """
        body = dict(claims) if claims is not None else self.claims_for(user, **overrides)
        kid = kid or self._kid
        signer = key or self._keys[kid]
        return jwt.encode(body, signer, algorithm="RS256",
                          headers={"kid": kid, **(headers or {})})

    def mint_unsigned(self, claims: Mapping[str, Any]) -> str:
        """``alg: none``: no signature at all."""
        return jwt.encode(dict(claims), "", algorithm="none")

    def mint_hmac_with_public_key(self, claims: Mapping[str, Any]) -> str:
        """HS256 keyed with the published public key (the classic algorithm confusion).

        Built by hand because PyJWT rightly refuses to use a PEM key as an HMAC secret.
        """
        header = b64url(json.dumps({"alg": "HS256", "typ": "JWT", "kid": self._kid}).encode())
        payload = b64url(json.dumps(dict(claims)).encode())
        signing_input = f"{header}.{payload}".encode()
        mac = hmac.new(self.public_pem(), signing_input, hashlib.sha256).digest()
        return f"{header}.{payload}.{b64url(mac)}"

    # --- endpoints

    def discovery(self) -> dict[str, Any]:
        base = self.issuer
        return {"issuer": base, "authorization_endpoint": f"{base}/authorize",
                "token_endpoint": f"{base}/token", "jwks_uri": f"{base}/jwks",
                "response_types_supported": ["code"],
                "grant_types_supported": ["authorization_code", "client_credentials",
                                          "password"],
                "code_challenge_methods_supported": ["S256"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "token_endpoint_auth_methods_supported": ["client_secret_post",
                                                          "client_secret_basic", "none"]}

    def _get(self, handler: _Handler, path: str, query: dict[str, str]) -> None:
        if path == "/.well-known/openid-configuration":
            handler.send_json(200, self.discovery())
        elif path == "/jwks":
            handler.send_json(200, self.jwks())
        elif path == "/authorize":
            self._authorize(handler, query, None)
        else:
            handler.send_json(404, {"error": "not_found"})

    def _post(self, handler: _Handler, path: str, form: dict[str, str]) -> None:
        if path == "/authorize":
            self._authorize(handler, form, form.get("username"))
        elif path == "/token":
            try:
                handler.send_json(200, self._token(form, handler.headers.get("Authorization")))
            except _OAuthError as exc:
                handler.send_json(exc.status, {"error": exc.error,
                                               "error_description": exc.description})
        else:
            handler.send_json(404, {"error": "not_found"})

    def _authorize(self, handler: _Handler, params: dict[str, str], login: str | None) -> None:
        client = self.clients.get(params.get("client_id", ""))
        redirect_uri = params.get("redirect_uri", "")
        if client is None or redirect_uri not in client.redirect_uris:
            # never redirect to a URI nobody registered
            handler.send_html(400, "<p>unknown client or redirect_uri</p>")
            return
        state = params.get("state", "")

        def back(**answer: str) -> None:
            handler.redirect(f"{redirect_uri}?{urlencode({**answer, 'state': state})}")

        if params.get("response_type") != "code":
            back(error="unsupported_response_type")
            return
        if params.get("code_challenge_method") != "S256" or not params.get("code_challenge"):
            back(error="invalid_request", error_description="PKCE with S256 is required")
            return
        user = self.auto_login
        if login is not None:
            known = self.users.get(login)
            given = params.get("password", "").encode()
            user = login if known and hmac.compare_digest(known.password.encode(), given) \
                else None
        if user is None:
            handler.send_html(200, self._login_form(params, failed=login is not None))
            return
        code = secrets.token_urlsafe(24)
        with self._lock:
            self._codes[code] = _Code(params["client_id"], redirect_uri,
                                      params["code_challenge"], user, params.get("nonce"),
                                      time.monotonic() + CODE_SECONDS)
        back(code=code)

    def _login_form(self, params: dict[str, str], failed: bool) -> str:
        hidden = "".join(f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
                         for k, v in params.items() if k not in ("username", "password"))
        note = "<p id='error'>wrong user name or password</p>" if failed else ""
        return (f"<!doctype html><title>Sandbox sign-in</title>{note}"
                f"<form method='post' action='/authorize'>{hidden}"
                "<input name='username' id='username' autocomplete='username'>"
                "<input name='password' id='password' type='password'>"
                "<button type='submit' id='login'>Sign in</button></form>")

    def _client(self, form: dict[str, str], authorization: str | None) -> str:
        """The authenticated client id (secret by Basic auth or form; none for public)."""
        client_id, secret = form.get("client_id", ""), form.get("client_secret")
        if authorization and authorization.startswith("Basic "):
            try:
                client_id, _, secret = base64.b64decode(authorization[6:]).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                raise _OAuthError("invalid_client", "bad Basic credentials", 401) from None
        client = self.clients.get(client_id)
        if client is None:
            raise _OAuthError("invalid_client", "unknown client", 401)
        if client.secret is not None and not hmac.compare_digest(
                client.secret.encode(), (secret or "").encode()):
            raise _OAuthError("invalid_client", "wrong client secret", 401)
        return client_id

    def _tokens(self, user: str, client_id: str, nonce: str | None = None) -> dict[str, Any]:
        id_claims = self.claims_for(user, audience=client_id)
        if nonce:
            id_claims["nonce"] = nonce
        return {"access_token": self.mint(user=user), "id_token": self.mint(id_claims),
                "token_type": "Bearer", "expires_in": self.token_seconds}

    def _token(self, form: dict[str, str], authorization: str | None) -> dict[str, Any]:
        grant = form.get("grant_type")
        client_id = self._client(form, authorization)
        if grant == "authorization_code":
            with self._lock:
                code = self._codes.pop(form.get("code", ""), None)  # single use
            if code is None or code.expires < time.monotonic() or code.client_id != client_id \
                    or code.redirect_uri != form.get("redirect_uri"):
                raise _OAuthError("invalid_grant", "unknown, used or expired code")
            digest = b64url(hashlib.sha256(form.get("code_verifier", "").encode()).digest())
            if not hmac.compare_digest(digest, code.challenge):
                raise _OAuthError("invalid_grant", "the PKCE code_verifier does not match")
            return self._tokens(code.user, client_id, code.nonce)
        if grant == "password":
            user = self.users.get(form.get("username", ""))
            if user is None or not hmac.compare_digest(user.password.encode(),
                                                       form.get("password", "").encode()):
                raise _OAuthError("invalid_grant", "wrong user name or password")
            return self._tokens(form["username"], client_id)
        if grant == "client_credentials":
            client = self.clients[client_id]
            if client.secret is None:
                raise _OAuthError("unauthorized_client", "public clients have no credentials")
            token = self.mint(self.claims_for(client_id, groups=list(client.groups)))
            return {"access_token": token, "token_type": "Bearer",
                    "expires_in": self.token_seconds}
        raise _OAuthError("unsupported_grant_type", f"grant_type {grant!r} is not supported")
