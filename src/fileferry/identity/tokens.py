"""OIDC tokens: JWTs checked against the issuer's published keys (its JWKS).

``authenticate(sso, token) -> Principal`` is what the CLI and the API call.
A token is accepted only when all of these hold:

* its header names an algorithm from ``sso.algorithms`` (public-key ones only),
  so ``alg: none`` and HMAC signed with the public key as the secret are refused
  before any key is looked at;
* its ``kid`` names a key in the issuer's JWKS whose type fits that algorithm
  (the JWKS is cached for ``sso.jwks_cache_seconds`` and fetched again, at most
  every ``MIN_REFRESH`` seconds, when a token names a key it does not hold: the
  issuer rotated its keys);
* the signature verifies, ``iss`` is the issuer, ``aud`` holds one of the
  audiences, ``exp`` has not passed and ``nbf``/``iat`` are not in the future,
  each with ``sso.leeway_seconds`` of clock skew;
* the user claim (``sso.user_claim``) is a non-empty string.

A refusal is ``InvalidToken`` with a short reason (``expired``, ``wrong
audience`` ...); messages never contain the token. A JWKS that cannot be
fetched is ``EndpointUnavailable`` (not the token's fault).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import jwt

from fileferry.errors import ConfigError, EndpointUnavailable, InvalidToken
from fileferry.identity.principal import Principal, local_principal
from fileferry.identity.settings import SsoSettings, check_url

__all__ = ["MIN_REFRESH", "JwksCache", "Principal", "TokenVerifier", "authenticate",
           "fetch_json", "local_principal", "verifier_for"]

MIN_REFRESH = 10.0
Fetch = Callable[[str, float], Mapping[str, Any]]
_KEY_TYPES = {"RS": "RSA", "PS": "RSA", "ES": "EC", "Ed": "OKP"}


def fetch_json(url: str, timeout: float) -> Mapping[str, Any]:
    """GET a JSON document; redirects are not followed (keys must come from where we said)."""
    import requests  # only when keys are fetched: the CLI starts faster without it

    try:
        response = requests.get(url, timeout=timeout, allow_redirects=False,
                                headers={"Accept": "application/json"})
    except requests.RequestException as exc:
        raise EndpointUnavailable(f"cannot reach the identity provider at {url}: "
                                  f"{type(exc).__name__}") from exc
    if response.status_code != 200:
        raise EndpointUnavailable(f"the identity provider answered {response.status_code} "
                                  f"for {url}")
    try:
        data = response.json()
    except ValueError as exc:
        raise EndpointUnavailable(f"{url} did not return JSON") from exc
    if not isinstance(data, dict):
        raise EndpointUnavailable(f"{url} did not return a JSON object")
    return data


def _key_type(alg: str) -> str:
    return _KEY_TYPES.get(alg[:2], "?")


class JwksCache:
    """The issuer's signing keys, cached; refreshed early when a token names an unknown key."""

    def __init__(self, sso: SsoSettings, fetch: Fetch = fetch_json,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._sso = sso
        self._fetch = fetch
        self._clock = clock
        self._lock = threading.Lock()
        self._url: str | None = sso.jwks_url
        self._keys: list[jwt.PyJWK] = []
        self._fetched_at: float | None = None

    def _discover(self) -> str:
        issuer = self._sso.issuer.rstrip("/")
        doc = self._fetch(f"{issuer}/.well-known/openid-configuration", self._sso.http_timeout)
        if str(doc.get("issuer", "")).rstrip("/") != issuer:
            raise ConfigError(f"sso.issuer: the provider's discovery document names issuer "
                              f"{doc.get('issuer')!r}, not {self._sso.issuer!r}")
        try:
            return check_url(str(doc.get("jwks_uri", "")))
        except ValueError as exc:
            raise ConfigError(f"sso.jwks_url: the discovered jwks_uri is unusable: {exc}; set "
                              "sso.jwks_url") from None

    def _load(self) -> None:
        if self._url is None:
            self._url = self._discover()
        data = self._fetch(self._url, self._sso.http_timeout)
        try:
            keys = jwt.PyJWKSet.from_dict(dict(data)).keys
        except jwt.PyJWKSetError as exc:
            raise EndpointUnavailable(f"{self._url} holds no usable signing key: {exc}") from exc
        self._keys = [k for k in keys if k.public_key_use in (None, "sig")]
        self._fetched_at = self._clock()

    def _pick(self, kid: str | None, alg: str) -> jwt.PyJWK | None:
        fits = [k for k in self._keys if k.key_type == _key_type(alg)
                and k._jwk_data.get("alg", alg) == alg]
        if kid is not None:
            fits = [k for k in fits if k.key_id == kid]
        elif len(fits) != 1:  # without a kid only an unambiguous key will do
            return None
        return fits[0] if fits else None

    def key(self, kid: str | None, alg: str) -> jwt.PyJWK:
        """The key for ``kid`` usable with ``alg``; InvalidToken when there is none."""
        with self._lock:
            now = self._clock()
            if self._fetched_at is None or now - self._fetched_at > self._sso.jwks_cache_seconds:
                self._load()
            found = self._pick(kid, alg)
            if found is None and self._fetched_at is not None \
                    and now - self._fetched_at >= MIN_REFRESH:
                self._load()
                found = self._pick(kid, alg)
        if found is None:
            raise InvalidToken.because("unknown signing key",
                                       f"no {alg} key with kid {kid!r} in the issuer's JWKS")
        return found


def _claim(claims: Mapping[str, Any], path: str) -> Any:
    """A claim by name, or by dotted path for nested ones (``realm_access.roles``)."""
    if path in claims:
        return claims[path]
    value: Any = claims
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


_REASONS: tuple[tuple[type[Exception], str], ...] = (
    (jwt.ExpiredSignatureError, "expired"),
    (jwt.ImmatureSignatureError, "not yet valid"),
    (jwt.InvalidAudienceError, "wrong audience"),
    (jwt.InvalidIssuerError, "wrong issuer"),
    (jwt.InvalidSignatureError, "bad signature"),
    (jwt.MissingRequiredClaimError, "missing claim"),
    (jwt.InvalidAlgorithmError, "algorithm not allowed"),
)


class TokenVerifier:
    """Checks tokens for one ``sso:`` configuration (thread-safe; keeps the JWKS cache)."""

    def __init__(self, sso: SsoSettings, jwks: JwksCache | None = None) -> None:
        self.sso = sso
        self.jwks = jwks or JwksCache(sso)

    def _header(self, token: str) -> dict[str, Any]:
        if not token or token.count(".") != 2:
            raise InvalidToken.because("malformed", "not a JWT (header.payload.signature)")
        try:
            return jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise InvalidToken.because("malformed", "the header is not valid JSON") from None

    def claims(self, token: str) -> dict[str, Any]:
        """The verified claims; InvalidToken (naming the reason) otherwise."""
        header = self._header(token)
        alg = str(header.get("alg"))
        if alg not in self.sso.algorithms:
            raise InvalidToken.because("algorithm not allowed",
                                       f"{alg!r}; allowed: {', '.join(self.sso.algorithms)}")
        kid = header.get("kid")
        key = self.jwks.key(str(kid) if kid is not None else None, alg)
        try:
            return jwt.decode(token, key.key, algorithms=[alg], audience=self.sso.audiences,
                              issuer=self.sso.issuer, leeway=self.sso.leeway_seconds,
                              options={"require": ["exp", "iss", "aud"]})
        except jwt.PyJWTError as exc:
            reason = next((r for cls, r in _REASONS if isinstance(exc, cls)), "malformed")
            detail = {"wrong audience": f"expected {' or '.join(self.sso.audiences)}",
                      "wrong issuer": f"expected {self.sso.issuer}",
                      "missing claim": getattr(exc, "claim", "")}.get(reason, "")
            raise InvalidToken.because(reason, detail) from None

    def verify(self, token: str) -> Principal:
        claims = self.claims(token)
        user = _claim(claims, self.sso.user_claim)
        if not isinstance(user, str) or not user.strip():
            raise InvalidToken.because(
                "no user", f"claim {self.sso.user_claim!r} is missing or empty (sso.user_claim)")
        raw = _claim(claims, self.sso.groups_claim)
        groups = [raw] if isinstance(raw, str) else raw if isinstance(raw, list) else []
        return Principal(user=user, groups=frozenset(str(g) for g in groups), claims=claims,
                         source="sso")


_VERIFIERS: dict[str, TokenVerifier] = {}
_VERIFIERS_LOCK = threading.Lock()


def verifier_for(sso: SsoSettings) -> TokenVerifier:
    """One verifier (and JWKS cache) per distinct ``sso:`` configuration in this process."""
    key = sso.model_dump_json()
    with _VERIFIERS_LOCK:
        return _VERIFIERS.setdefault(key, TokenVerifier(sso))


def authenticate(sso: SsoSettings, token: str) -> Principal:
    """The principal a bearer token proves; InvalidToken when it proves nothing.

    Blocks on the JWKS fetch the first time (and after rotation): call it from a
    worker thread in async code.
    """
    return verifier_for(sso).verify(token.strip())
