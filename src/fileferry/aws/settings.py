"""Settings on Lambda: the same document as ``fileferry.yaml``, found through the environment.

Where the document comes from (the first variable set wins):

* ``FILEFERRY_CONFIG_SSM``: the name of an SSM parameter (String or SecureString)
  holding the YAML; what the SAM template sets. Cached for
  ``FILEFERRY_CONFIG_MAX_AGE`` seconds (300), so a change reaches warm functions.
* ``FILEFERRY_CONFIG_JSON``: the document itself (JSON or YAML) in the variable
  (Lambda's environment holds 4 KB in all: small set-ups and tests).
* ``FILEFERRY_CONFIG``: a file path, as on a workstation (e.g. bundled with the code).

Secrets never sit in the document. ``${aws-secret:NAME}`` is replaced by the
secret's string, ``${aws-secret:NAME#key}`` by one key of a JSON secret, both from
Secrets Manager (Powertools Parameters, cached like the document);
``${aws-secret-file:NAME#key}`` writes the value to a private file under
``/tmp`` (mode 0600) and is replaced by its path, for ``private_key_file``.
``${VAR}`` still comes from the environment, as everywhere.

Each function keeps only the sections it needs (``sections``): the other secret
sections (``destinations``, ``servicenow``, ``notifications``) are dropped
before any secret is fetched, so a function never asks for a secret its
least-privilege role does not grant.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from fileferry.config import Settings, parse_settings
from fileferry.errors import ConfigError

__all__ = ["SECRET_SECTIONS", "load_lambda_settings", "resolve_secrets"]

SECRET_SECTIONS = ("destinations", "servicenow", "notifications")
_SECRET_REF = re.compile(r"\$\{aws-secret(-file)?:([^}#]+)(?:#([^}]+))?\}")
DEFAULT_MAX_AGE = 300


def _max_age() -> int:
    raw = os.environ.get("FILEFERRY_CONFIG_MAX_AGE", str(DEFAULT_MAX_AGE))
    if not raw.isdigit():
        raise ConfigError(f"FILEFERRY_CONFIG_MAX_AGE={raw!r}: give whole seconds, e.g. 300")
    return int(raw)


def _fetch_parameter(name: str) -> str:
    from aws_lambda_powertools.utilities import parameters

    try:
        value = parameters.get_parameter(name, decrypt=True, max_age=_max_age())
    except parameters.exceptions.GetParameterError as exc:
        raise ConfigError(f"cannot read the configuration from SSM parameter {name!r} "
                          f"({exc}); check FILEFERRY_CONFIG_SSM and the function's "
                          "ssm:GetParameter permission") from None
    return str(value)


def _fetch_secret(name: str) -> str:
    from aws_lambda_powertools.utilities import parameters

    try:
        value = parameters.get_secret(name, max_age=_max_age())
    except parameters.exceptions.GetParameterError as exc:
        raise ConfigError(f"cannot read secret {name!r} from Secrets Manager ({exc}); check "
                          "that it exists and that this function's role may read it") from None
    return value if isinstance(value, str) else bytes(value).decode("utf-8")


def _secret_value(name: str, key: str | None) -> str:
    raw = _fetch_secret(name)
    if key is None:
        value = raw
    else:
        try:
            data = json.loads(raw)
            value = data[key]
        except (ValueError, TypeError, KeyError):
            raise ConfigError(f"secret {name!r} is not a JSON object with the key {key!r}; "
                              f"store it as {{\"{key}\": \"...\"}} or drop '#{key}'") from None
        if not isinstance(value, str):
            raise ConfigError(f"secret {name!r}: key {key!r} must hold a string")
    if "${" in value:
        raise ConfigError(f"secret {name!r} holds '${{', which the configuration would expand "
                          "as a variable; store the value without it")
    return value


def _secret_file(name: str, key: str | None, value: str) -> str:
    """Write ``value`` to a private file (once per content) and return its path."""
    folder = Path(tempfile.gettempdir()) / "fileferry-secrets"
    folder.mkdir(mode=0o700, exist_ok=True)
    path = folder / hashlib.sha256(f"{name}#{key}".encode()).hexdigest()[:24]
    if not path.exists() or path.read_text(encoding="utf-8") != value:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(value if value.endswith("\n") else value + "\n")
    return str(path)


def resolve_secrets(node: Any) -> Any:
    """Replace every ``${aws-secret...}`` reference in a parsed document."""
    if isinstance(node, dict):
        return {k: resolve_secrets(v) for k, v in node.items()}
    if isinstance(node, list):
        return [resolve_secrets(v) for v in node]
    if not isinstance(node, str):
        return node

    def sub(match: re.Match[str]) -> str:
        as_file, name, key = match.group(1), match.group(2).strip(), match.group(3)
        value = _secret_value(name, key)
        return _secret_file(name, key, value) if as_file else value

    return _SECRET_REF.sub(sub, node)


def _document() -> tuple[Any, str]:
    if name := os.environ.get("FILEFERRY_CONFIG_SSM"):
        text, where = _fetch_parameter(name), f"SSM parameter {name}"
    elif text := os.environ.get("FILEFERRY_CONFIG_JSON", ""):
        where = "FILEFERRY_CONFIG_JSON"
    elif where := os.environ.get("FILEFERRY_CONFIG", ""):
        try:
            text = Path(where).expanduser().read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read FILEFERRY_CONFIG={where}: {exc.strerror}") from None
    else:
        raise ConfigError("no configuration for this function: set FILEFERRY_CONFIG_SSM "
                          "(an SSM parameter name), FILEFERRY_CONFIG_JSON (the document) or "
                          "FILEFERRY_CONFIG (a file path)")
    try:
        return yaml.safe_load(text), where  # JSON is YAML
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where}: not valid YAML or JSON: {exc}") from None


def load_lambda_settings(sections: Iterable[str] = SECRET_SECTIONS) -> Settings:
    """The function's settings, keeping only the secret ``sections`` it needs."""
    data, where = _document()
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: the top level must be a mapping of keys")
    keep = set(sections)
    data = {k: v for k, v in data.items() if k not in SECRET_SECTIONS or k in keep}
    return parse_settings(resolve_secrets(data), where)
