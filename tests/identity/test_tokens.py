"""Tokens from the sandbox provider, checked over real HTTP against its JWKS."""

from __future__ import annotations

import time
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from fileferry.errors import ConfigError, InvalidToken, RefusedError
from fileferry.identity.settings import SsoSettings
from fileferry.identity.tokens import JwksCache, TokenVerifier, authenticate, fetch_json
from fileferry.sandbox.oidc import OidcProvider
from tests.identity.conftest import sso_section


def refused(verifier: TokenVerifier, token: str) -> InvalidToken:
    with pytest.raises(InvalidToken) as info:
        verifier.verify(token)
    assert token not in str(info.value), "the message must not echo the token"
    assert isinstance(info.value, RefusedError) and info.value.exit_code == 2
    return info.value


def test_a_valid_token_gives_the_principal(oidc: OidcProvider, sso: SsoSettings) -> None:
    principal = authenticate(sso, oidc.mint(user="bob"))
    assert principal.user == "bob"
    assert principal.groups == {"finance", "finance-approvers"}
    assert principal.source == "sso"


def test_user_and_groups_come_from_the_configured_claims(oidc: OidcProvider) -> None:
    sso = SsoSettings.model_validate(sso_section(oidc, user_claim="email",
                                                 groups_claim="realm_access.roles"))
    token = oidc.mint(user="carol", email="carol@example.com",
                      realm_access={"roles": ["admins"]})
    principal = TokenVerifier(sso).verify(token)
    assert (principal.user, principal.groups) == ("carol@example.com", {"admins"})
    missing = refused(TokenVerifier(sso), oidc.mint(user="carol"))
    assert missing.reason == "no user" and "email" in str(missing)


@pytest.mark.parametrize(("case", "reason"), [
    ("expired", "expired"),
    ("not-yet-valid", "not yet valid"),
    ("wrong-audience", "wrong audience"),
    ("wrong-issuer", "wrong issuer"),
    ("bad-signature", "bad signature"),
    ("alg-none", "algorithm not allowed"),
    ("hmac-with-public-key", "algorithm not allowed"),
    ("unknown-kid", "unknown signing key"),
    ("no-exp", "missing claim"),
    ("garbage", "malformed"),
])
def test_bad_tokens_are_refused_with_the_reason(oidc: OidcProvider, sso: SsoSettings,
                                                case: str, reason: str) -> None:
    now = int(time.time())
    good = oidc.claims_for("alice")
    tokens: dict[str, Any] = {
        # beyond the 30 s leeway either way
        "expired": lambda: oidc.mint(user="alice", expires_in=-120),
        "not-yet-valid": lambda: oidc.mint(user="alice", nbf=now + 600, iat=now + 600),
        "wrong-audience": lambda: oidc.mint(user="alice", audience="someone-else"),
        "wrong-issuer": lambda: oidc.mint(user="alice", iss="https://evil.example"),
        "bad-signature": lambda: oidc.mint(good, key=rsa.generate_private_key(
            public_exponent=65537, key_size=2048)),
        "alg-none": lambda: oidc.mint_unsigned(good),
        "hmac-with-public-key": lambda: oidc.mint_hmac_with_public_key(good),
        "unknown-kid": lambda: oidc.mint(good, kid="k-unknown", key=rsa.generate_private_key(
            public_exponent=65537, key_size=2048)),
        "no-exp": lambda: oidc.mint({k: v for k, v in good.items() if k != "exp"}),
        "garbage": lambda: "not-a-token",
    }
    error = refused(TokenVerifier(sso), tokens[case]())
    assert error.reason == reason, str(error)


def test_the_hmac_trick_fails_even_if_hs256_reached_the_key_check(oidc: OidcProvider,
                                                                  sso: SsoSettings) -> None:
    """Belt and braces: a verifier told to allow HS256 is impossible to configure."""
    with pytest.raises(ValueError, match="public-key algorithms only"):
        SsoSettings.model_validate(sso_section(oidc, algorithms=["RS256", "HS256"]))


def test_a_small_clock_skew_is_tolerated(oidc: OidcProvider, sso: SsoSettings) -> None:
    token = oidc.mint(user="alice", expires_in=-10)  # expired 10 s ago, leeway 30 s
    assert TokenVerifier(sso).verify(token).user == "alice"
    strict = SsoSettings.model_validate(sso_section(oidc, leeway_seconds=0))
    assert refused(TokenVerifier(strict), token).reason == "expired"


def test_keys_are_discovered_cached_and_refreshed_after_rotation(oidc: OidcProvider,
                                                                 sso: SsoSettings) -> None:
    fetched: list[str] = []
    clock = [1000.0]

    def counting(url: str, timeout: float) -> Any:
        fetched.append(url.rsplit("/", 1)[1])
        return fetch_json(url, timeout)

    verifier = TokenVerifier(sso, JwksCache(sso, counting, lambda: clock[0]))
    for _ in range(3):
        verifier.verify(oidc.mint(user="alice"))
    assert fetched == ["openid-configuration", "jwks"], "discovered once, then cached"
    old = oidc._kid
    try:
        oidc.rotate_key()
        clock[0] += 1  # a token with an unknown kid right after a fetch: no hammering
        assert refused(verifier, oidc.mint(user="alice")).reason == "unknown signing key"
        clock[0] += 60
        assert verifier.verify(oidc.mint(user="alice")).user == "alice"
        assert fetched.count("jwks") == 2
    finally:
        oidc._kid = old


def test_jwks_url_must_be_safe_and_the_issuer_must_match(oidc: OidcProvider) -> None:
    with pytest.raises(ValueError, match="https"):
        SsoSettings.model_validate(sso_section(oidc, jwks_url="http://idp.example/jwks"))
    lying = SsoSettings.model_validate(sso_section(oidc, issuer=oidc.issuer + "/"))
    assert TokenVerifier(lying).jwks.key(oidc._kid, "RS256") is not None  # "/" is fine
    other = SsoSettings(issuer="http://127.0.0.1:1", audience="x")
    with pytest.raises(Exception, match="cannot reach the identity provider"):
        TokenVerifier(other).verify(oidc.mint(user="alice"))

    def wrong(url: str, timeout: float) -> Any:
        return {"issuer": "https://elsewhere.example", "jwks_uri": oidc.issuer + "/jwks"}

    sso = SsoSettings.model_validate(sso_section(oidc))
    with pytest.raises(ConfigError, match="names issuer"):
        TokenVerifier(sso, JwksCache(sso, wrong)).verify(oidc.mint(user="alice"))
