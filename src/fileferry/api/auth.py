"""Who is calling: every route but ``/healthz`` depends on :func:`require_principal`.

Until SSO is configured (the identity issue), the caller proves itself with a
bearer token: ``api.token`` from the configuration, or, when none is set, a
token the server generates into a file only its owner can read (mode 0600).
The token is compared in constant time and never logged; only the file's path
is printed.

With ``sso:`` configured, ``app.state.authenticator`` is
:class:`fileferry.api.sso.OidcAuthenticator` (a JWT from the identity provider,
or the dashboard's session cookie) instead. The routes only ever see an
:class:`fileferry.identity.principal.Principal`; an authenticator refuses a
credential it cannot accept with ``InvalidToken`` (401 naming the reason).
"""

from __future__ import annotations

import hmac
import os
import secrets
import stat
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from fastapi import HTTPException, Request

from fileferry.api.errors import not_found
from fileferry.config import Settings
from fileferry.errors import ConfigError, InvalidToken
from fileferry.identity.principal import Principal
from fileferry.identity.visibility import can_see

if TYPE_CHECKING:
    from fileferry.store import Store, TransferRecord
    from fileferry.transfer.engine import TransferRequest

__all__ = [
    "ApiToken",
    "Authenticator",
    "BearerTokenAuthenticator",
    "Principal",
    "api_token",
    "default_token_file",
    "owner_only_secret",
    "policy_denial",
    "requester_for",
    "require_principal",
    "visible_record",
]

FALLBACK_TOKEN_FILE = "~/.config/fileferry/api-token"
TOKEN_BYTES = 32


class Authenticator(Protocol):
    async def authenticate(self, request: Request) -> Principal | None:
        """The caller, or None when the request carries no credential at all.
        A credential that is refused raises InvalidToken (naming why)."""


def _bearer(request: Request) -> str | None:
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    return value.strip() or None if scheme.lower() == "bearer" else None


class BearerTokenAuthenticator:
    """Accepts ``Authorization: Bearer <token>`` for the one configured token."""

    def __init__(self, token: str) -> None:
        self._token = token.encode()

    async def authenticate(self, request: Request) -> Principal | None:
        given = _bearer(request)
        if given is None or not hmac.compare_digest(given.encode(), self._token):
            return None
        return Principal(user="api", source="token")


async def require_principal(request: Request) -> Principal:
    """The FastAPI dependency: the caller, or 401 with ``WWW-Authenticate: Bearer``."""
    authenticator: Authenticator = request.app.state.authenticator
    try:
        principal = await authenticator.authenticate(request)
    except InvalidToken as exc:  # the message names the reason, never the token
        raise HTTPException(status_code=401, detail=f"{exc}; sign in again",
                            headers={"WWW-Authenticate": 'Bearer error="invalid_token"'}
                            ) from None
    if principal is None:
        raise HTTPException(status_code=401, headers={"WWW-Authenticate": "Bearer"},
                            detail="authentication required: send Authorization: Bearer "
                            "<token> (api.token, or the token file `fileferry serve` names)")
    return principal


def requester_for(principal: Principal, asked: str | None) -> str:
    """Whom a transfer is for. A token is a shared service credential, so it may name
    the requester (default ``api``); an SSO principal is the requester itself."""
    if principal.source == "token":
        return asked or "api"
    return principal.user


def policy_denial(settings: Settings, request: TransferRequest,
                  caller: Principal) -> str | None:
    """Why no policy lets ``caller`` send ``request`` now (None: one does). The same
    rules ValidateInput applies (before the objects are listed, so sizes aside)."""
    from fileferry.identity.policy import Facts, evaluate
    from fileferry.paths import split_destination

    facts = Facts(user=request.requester, groups=caller.groups, sources=request.sources,
                  destination=split_destination(request.destination)[0], when=time.time())
    decision = evaluate(settings.policies, facts, server_mode=settings.sso is not None)
    return None if decision.allowed else decision.reason


@dataclass(frozen=True)
class ApiToken:
    value: str
    path: Path | None
    """The file it came from (None: from the configuration)."""
    generated: bool = False


def default_token_file(settings: Settings) -> Path:
    """``api-token`` beside a SQLite store's file, else ``~/.config/fileferry/api-token``."""
    if settings.api.token_file is not None:
        return settings.api.token_file
    url = settings.store.url
    if url.startswith("sqlite:///") and not url.endswith(":memory:"):
        return Path(url.removeprefix("sqlite:///")).expanduser().parent / "api-token"
    return Path(FALLBACK_TOKEN_FILE).expanduser()


def _read_token_file(path: Path) -> str:
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(f"{path}: this secret file is readable by others (mode "
                          f"{stat.S_IMODE(mode):o}); run `chmod 600 {path}`")
    token = path.read_text(encoding="utf-8").strip()
    if len(token) < 16:
        raise ConfigError(f"{path}: this secret file holds no secret of 16+ characters; "
                          "delete it and the server generates a new one")
    return token


def api_token(settings: Settings) -> ApiToken:
    """The token the server accepts: ``api.token``, else the token file's, else a new
    one written to the token file (created with O_EXCL, mode 0600, never followed
    through a symlink). A token file others can read is refused (ConfigError)."""
    if settings.api.token is not None:
        return ApiToken(settings.api.token.get_secret_value(), None)
    path = default_token_file(settings)
    token, generated = owner_only_secret(path)
    return ApiToken(token, path, generated=generated)


def owner_only_secret(path: Path) -> tuple[str, bool]:
    """The secret in ``path`` (and False), or a new one written there (and True):
    created with O_EXCL, mode 0600, never followed through a symlink. A file others
    can read is refused (ConfigError)."""
    try:
        return _read_token_file(path), False
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    token = secrets.token_urlsafe(TOKEN_BYTES)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError:  # another server made it meanwhile: use theirs
        return _read_token_file(path), False
    except OSError as exc:
        raise ConfigError(f"cannot create {path}: {exc.strerror}; set api.token_file "
                          "(the directory it names must be writable)") from None
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(token + "\n")
    return token, True


async def visible_record(settings: Settings, store: Store, caller: Principal,
                         transfer_id: str) -> TransferRecord:
    """The transfer's record when ``caller`` may see it (identity/visibility.py), else
    404 NotFound — also when it exists, so an id someone else uses is not revealed."""
    record = await store.get_transfer(transfer_id)
    if record is None or not await can_see(settings.sso, store, caller, transfer_id,
                                           record.requester):
        raise not_found(transfer_id)
    return record
