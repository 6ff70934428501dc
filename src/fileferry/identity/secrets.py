"""Destination credentials: AWS Secrets Manager, an environment variable, or an owner-only file.

Per destination, at most one of (``config.DestinationSettings``):

* ``secret_arn: arn:aws:secretsmanager:...`` – a secret whose ``SecretString``
  is JSON ``{"password": "...", "private_key": "-----BEGIN OPENSSH PRIVATE
  KEY-----..."}`` (either or both; other keys such as ``username`` are
  ignored). Fetched with boto3 (``secrets_manager.endpoint_url`` for a local
  stand-in) and reused for ``secrets_manager.cache_seconds`` (60).
* ``password_env: VAR`` – the password in an environment variable, read at use.
* ``credentials_file: PATH`` – a JSON file like the secret; refused unless it
  belongs to the user running FileFerry and nobody else may read or write it
  (mode 0600 or 0400).
* ``password: ${VAR}`` in the file itself, as before.

Every error names the destination key and what to do, never the value: no
secret reaches a log line, an exception message, the store, a ticket or a
notification (they only ever see ``reference(name)``).
"""

from __future__ import annotations

import json
import logging
import os
import stat
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import SecretStr

from fileferry.config import DestinationSettings, Settings
from fileferry.errors import ConfigError, EndpointUnavailable, PermissionDenied
from fileferry.transfer.engine import destination_settings

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager import SecretsManagerClient

__all__ = ["DestinationSecrets", "read_credentials_file", "read_secret_text", "secret_string",
           "with_credentials"]

FIELDS = ("password", "private_key")


class _HideSecretBodies(logging.Filter):
    """botocore logs whole response bodies at DEBUG, GetSecretValue's included: keep the
    line, drop the body."""

    def filter(self, record: logging.LogRecord) -> bool:
        if "Secret" in str(record.args) or "Secret" in str(record.msg):
            record.msg, record.args = "Response body: (hidden: it may hold a secret)", ()
        return True


def _hide_secret_bodies() -> None:
    parsers = logging.getLogger("botocore.parsers")
    if not any(isinstance(f, _HideSecretBodies) for f in parsers.filters):
        parsers.addFilter(_HideSecretBodies())


_hide_secret_bodies()


def _credentials(data: Any, where: str) -> dict[str, str]:
    """The usable fields of a secret's JSON document (the values are never shown)."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: must hold a JSON object such as "
                          '{"password": "..."} or {"private_key": "..."}')
    found = {k: data[k] for k in FIELDS if isinstance(data.get(k), str) and data[k]}
    if not found:
        raise ConfigError(f"{where}: holds neither a 'password' nor a 'private_key' string")
    return found


def read_credentials_file(path: Path, where: str) -> dict[str, str]:
    """The credentials in ``path``; refused unless owned by us and mode 0600/0400 or stricter.

    The checks are made on the opened file, so it cannot be swapped in between.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as exc:
        raise ConfigError(f"{where}: cannot open {path} ({exc.strerror}); a symbolic link "
                          "is refused too") from None
    with os.fdopen(fd, "rb") as fh:
        info = os.fstat(fh.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise ConfigError(f"{where}: {path} is not a regular file")
        if info.st_uid != os.getuid():
            raise ConfigError(f"{where}: {path} belongs to uid {info.st_uid}, not to the user "
                              f"running FileFerry (uid {os.getuid()}); chown it")
        if info.st_mode & 0o077:
            raise ConfigError(f"{where}: {path} may be read or written by others (mode "
                              f"{stat.S_IMODE(info.st_mode):04o}); run chmod 600 {path}")
        raw = fh.read()
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise ConfigError(f"{where}: {path} is not valid JSON") from None
    return _credentials(data, where)


def _apply(dsettings: DestinationSettings, found: Mapping[str, str]) -> DestinationSettings:
    update: dict[str, Any] = {k: SecretStr(v) for k, v in found.items()}
    return dsettings.model_copy(update=update)


class DestinationSecrets:
    """The workflow's ``Secrets`` port: settings with credentials filled in at use.

    Thread-safe; Secrets Manager answers are cached per ARN for
    ``secrets_manager.cache_seconds`` (by ``clock``).
    """

    def __init__(self, settings: Settings, *, client: SecretsManagerClient | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._settings = settings
        self._client = client
        self._clock = clock
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[float, dict[str, str]]] = {}

    def reference(self, name: str) -> str:
        d = destination_settings(self._settings, name)
        if d.secret_arn:
            return f"secretsmanager:{d.secret_arn}"
        if d.password_env:
            return f"env:{d.password_env}"
        if d.credentials_file:
            return f"file:{d.credentials_file}"
        return f"config:destinations.{name}"

    def destination(self, name: str) -> DestinationSettings:
        d = destination_settings(self._settings, name)
        if d.secret_arn:
            return _apply(d, self._secret(name, d.secret_arn))
        if d.password_env:
            value = os.environ.get(d.password_env)
            if not value:
                raise ConfigError(f"destinations.{name}.password_env: {d.password_env} is not "
                                  "set (or empty) in the environment of this process")
            return _apply(d, {"password": value})
        if d.credentials_file:
            where = f"destinations.{name}.credentials_file"
            return _apply(d, read_credentials_file(d.credentials_file, where))
        return d

    def _boto(self) -> SecretsManagerClient:
        if self._client is None:
            import boto3

            sm = self._settings.secrets_manager
            self._client = boto3.client("secretsmanager", endpoint_url=sm.endpoint_url,
                                        region_name=sm.region)
        return self._client

    def _secret(self, name: str, arn: str) -> dict[str, str]:
        ttl = self._settings.secrets_manager.cache_seconds
        with self._lock:
            cached = self._cache.get(arn)
            if cached is not None and self._clock() - cached[0] < ttl:
                return cached[1]
            found = self._fetch(name, arn)
            self._cache[arn] = (self._clock(), found)
            return found

    def _fetch(self, name: str, arn: str) -> dict[str, str]:
        where = f"destinations.{name}.secret_arn"
        text = secret_string(self._boto(), arn, where, "and kms:Decrypt")
        if text is None:
            raise ConfigError(f"{where}: {arn} holds binary data; store the JSON as a string")
        try:
            data = json.loads(text)
        except ValueError:
            raise ConfigError(f"{where}: {arn} is not a JSON object") from None
        return _credentials(data, f"{where} ({arn})")


def secret_string(client: SecretsManagerClient, secret_id: str, where: str,
                  grant_hint: str) -> str | None:
    """``SecretString`` of ``secret_id`` (None: the secret holds binary data). Errors name
    ``where`` and the secret, never its value; ``grant_hint`` completes the advice on an
    access denial."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        text: str | None = client.get_secret_value(SecretId=secret_id).get("SecretString")
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code == "ResourceNotFoundException":
            raise ConfigError(f"{where}: no secret {secret_id} (check the name or ARN and "
                              "the region)") from None
        if code in ("AccessDeniedException", "DecryptionFailure"):
            raise PermissionDenied(f"{where}: not allowed to read {secret_id} ({code}); grant "
                                   f"secretsmanager:GetSecretValue ({grant_hint})") from None
        raise EndpointUnavailable(f"{where}: Secrets Manager answered {code}") from None
    except BotoCoreError as exc:
        raise EndpointUnavailable(f"{where}: cannot reach Secrets Manager "
                                  f"({type(exc).__name__})") from None
    return text


def with_credentials(settings: Settings, name: str,
                     secrets: DestinationSecrets | None = None) -> Settings:
    """``settings`` with destination ``name``'s credentials filled in (for ``check``, dry runs)."""
    resolved = (secrets or DestinationSecrets(settings)).destination(name)
    return settings.model_copy(update={"destinations": {**settings.destinations,
                                                        name: resolved}})


def read_secret_text(settings: Settings, ref: str, where: str, *,
                     client: SecretsManagerClient | None = None) -> str:
    """The text of Secrets Manager secret ``ref`` (an ARN or name; ``NAME#field`` is one
    string field of a JSON secret), e.g. a PGP key. Errors name ``where`` and the
    secret, never its value. Not cached: it is read once per use (a transfer task)."""
    name, _, field = ref.partition("#")
    if client is None:
        import boto3

        sm = settings.secrets_manager
        client = boto3.client("secretsmanager", endpoint_url=sm.endpoint_url,
                              region_name=sm.region)
    text = secret_string(client, name, where,
                         "on AWS: keep it under the SecretsPrefix's destinations/")
    if text is None:
        raise ConfigError(f"{where}: {name} holds binary data; store the key as a string")
    if not field:
        return text
    try:
        value = json.loads(text)[field]
    except (ValueError, TypeError, KeyError):
        raise ConfigError(f"{where}: {name} is not a JSON object with the field "
                          f"{field!r}") from None
    if not isinstance(value, str):
        raise ConfigError(f"{where}: {name}#{field} must hold a string")
    return value
