"""The ``sso:``, ``policies:`` and ``secrets_manager:`` configuration sections.

Kept apart from ``config.py`` (which includes them) so the identity modules
and the settings they read stay together. Every model refuses unknown keys.
"""

from __future__ import annotations

import re
from typing import Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ByteSize,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)

from fileferry.timezones import TimeZoneName

__all__ = ["ASYMMETRIC_ALGORITHMS", "DAYS", "ApprovalSettings", "HoursSettings", "PolicySettings",
           "SecretsManagerSettings", "SsoSettings", "check_url"]

# Only public-key algorithms: a token signed with "none" or with HMAC (where an attacker
# would use the published public key as the shared secret) is refused before any check.
ASYMMETRIC_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512",
                         "ES256", "ES384", "ES512", "EdDSA")
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_LOOPBACK = {"127.0.0.1", "::1", "localhost"}
_HHMM = re.compile(r"([01]\d|2[0-3]):[0-5]\d")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def check_url(value: str) -> str:
    """An ``https://`` URL, or ``http://`` on a loopback host (the sandbox provider)."""
    parts = urlsplit(value)
    if parts.scheme == "https" and parts.hostname:
        return value
    if parts.scheme == "http" and parts.hostname in _LOOPBACK:
        return value
    raise ValueError(f"{value!r} must be an https:// URL (http:// only on 127.0.0.1 or "
                     "localhost): keys fetched in clear text could be swapped on the way")


class SsoSettings(_Model):
    """OIDC: tokens from ``issuer`` for ``audience``, checked against its JWKS."""

    issuer: str
    audience: str | list[str]
    jwks_url: str | None = None
    """Discovered from ``{issuer}/.well-known/openid-configuration`` when absent."""
    user_claim: str = "sub"
    """The claim naming the user (``sub`` is the one every provider must send and never
    reassigns; ``preferred_username`` or ``email`` read better but may change)."""
    groups_claim: str = "groups"
    leeway_seconds: int = Field(default=30, ge=0, le=300)
    session_ttl_seconds: float = Field(default=10.0, gt=0, le=3600)
    algorithms: list[str] = Field(default_factory=lambda: ["RS256", "ES256"], min_length=1)
    jwks_cache_seconds: float = Field(default=300.0, ge=0)
    http_timeout: float = Field(default=5.0, gt=0)
    client_id: str | None = None
    """The dashboard's client (authorization-code flow with PKCE)."""
    client_secret: SecretStr | None = None
    redirect_url: str | None = None
    """Where the provider sends the browser back (``https://HOST/auth/callback``);
    derived from the request when absent."""
    session_seconds: int = Field(default=3600, ge=60, le=24 * 3600)
    """The dashboard's session cookie lives this long at most (and never past the
    token it came from)."""
    operator_groups: list[str] = Field(default_factory=list)
    """Members see and may cancel every transfer (operations, audit); everyone else
    sees their own and those their approval groups decide (identity/visibility.py)."""

    @field_validator("issuer", "jwks_url", "redirect_url")
    @classmethod
    def _secure_url(cls, value: str | None) -> str | None:
        return None if value is None else check_url(value)

    @field_validator("algorithms")
    @classmethod
    def _asymmetric(cls, value: list[str]) -> list[str]:
        bad = [a for a in value if a not in ASYMMETRIC_ALGORITHMS]
        if bad:
            raise ValueError(f"{', '.join(bad)} not allowed; use public-key algorithms only: "
                             + ", ".join(ASYMMETRIC_ALGORITHMS))
        return value

    @property
    def audiences(self) -> list[str]:
        return [self.audience] if isinstance(self.audience, str) else list(self.audience)


class HoursSettings(_Model):
    """A daily window, e.g. ``{start: "07:00", end: "19:00", timezone: Europe/Berlin}``.

    ``end`` before ``start`` spans midnight; ``days`` names the day the window starts.
    """

    start: str
    end: str
    timezone: TimeZoneName = "UTC"
    days: list[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]] = \
        Field(default_factory=lambda: list(DAYS))  # type: ignore[arg-type]

    @field_validator("start", "end")
    @classmethod
    def _clock_time(cls, value: str) -> str:
        if not _HHMM.fullmatch(value):
            raise ValueError(f"{value!r} is not a time of day such as 07:30")
        return value


class ApprovalSettings(_Model):
    group: str = Field(min_length=1)
    timeout: int = Field(default=3600, ge=1, le=7 * 24 * 3600)
    """Seconds to wait for a decision; then the transfer is rejected (ApprovalTimedOut)."""


class PolicySettings(_Model):
    """One rule: who (``users``/``groups``) may send what (``sources``) where."""

    name: str = Field(min_length=1)
    users: list[str] = Field(default_factory=list)
    groups: list[str] = Field(default_factory=list)
    sources: list[str] = Field(min_length=1)
    """Globs over ``s3://bucket/key``; ``*`` also matches ``/``."""
    destinations: list[str] = Field(min_length=1)
    """Destination names (globs)."""
    max_total_size: ByteSize | None = None
    hours: HoursSettings | None = None
    requires_approval: ApprovalSettings | None = None

    @field_validator("sources")
    @classmethod
    def _s3_globs(cls, value: list[str]) -> list[str]:
        bad = [s for s in value if not s.startswith("s3://")]
        if bad:
            raise ValueError(f"{', '.join(bad)}: sources are globs over s3://bucket/key, "
                             "e.g. s3://reports/finance/*")
        return value

    @model_validator(mode="after")
    def _someone(self) -> PolicySettings:
        if not self.users and not self.groups:
            raise ValueError("name the users or groups the rule is for "
                             "(users: ['*'] means everyone)")
        return self


class SecretsManagerSettings(_Model):
    endpoint_url: str | None = None
    region: str = "us-east-1"
    cache_seconds: float = Field(default=60.0, ge=0, le=3600)
    """How long a fetched secret is reused before it is fetched again."""
