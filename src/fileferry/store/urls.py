"""``store.url``: which backend holds the state, parsed without importing any backend.

Two forms are accepted::

    sqlite:///PATH            ~ expanded; four slashes for an absolute path; :memory:
    dynamodb://?region=eu-west-1&table_prefix=FileFerry[&endpoint_url=http://HOST:PORT]

For DynamoDB every parameter is optional: ``region`` falls back to boto3's own
lookup (``AWS_REGION``, ``AWS_DEFAULT_REGION``, the profile), ``table_prefix``
to ``FileFerry``, and ``endpoint_url`` to boto3's (which honours
``AWS_ENDPOINT_URL_DYNAMODB`` and ``AWS_ENDPOINT_URL`` by itself). Anything
else is a ValueError whose message shows the accepted form; the configuration
loader turns it into a ConfigError naming ``store.url``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

__all__ = ["DEFAULT_TABLE_PREFIX", "DynamoUrl", "SqliteUrl", "parse_store_url"]

SQLITE_PREFIX = "sqlite:///"
DYNAMO_SCHEME = "dynamodb"
DEFAULT_TABLE_PREFIX = "FileFerry"
SQLITE_FORM = "sqlite:///PATH"
DYNAMO_FORM = ("dynamodb://?region=REGION&table_prefix=PREFIX "
               "(optional: &endpoint_url=http://HOST:PORT)")
# A DynamoDB table name is 3-255 of [A-Za-z0-9_.-]; the prefix leaves room for "-leases" etc.
_PREFIX = re.compile(r"[A-Za-z0-9_.-]{1,200}")
_USERINFO = re.compile(r"//[^/?#&]*@")
_REGION = re.compile(r"[a-z][a-z0-9-]{1,30}")  # loose: DynamoDB Local takes any name


@dataclass(frozen=True)
class SqliteUrl:
    """A SQLite file (already ``~``-expanded), or ``:memory:``."""

    path: str


@dataclass(frozen=True)
class DynamoUrl:
    """DynamoDB tables named ``{table_prefix}-{table}``; None means boto3's default."""

    region: str | None = None
    table_prefix: str = DEFAULT_TABLE_PREFIX
    endpoint_url: str | None = None


def parse_store_url(url: str) -> SqliteUrl | DynamoUrl:
    """The backend and its parameters; ValueError (saying the accepted forms) otherwise."""
    if url.startswith(SQLITE_PREFIX):
        path = url[len(SQLITE_PREFIX):]
        if not path:
            raise ValueError(f"{url!r} names no file: use {SQLITE_FORM}")
        return SqliteUrl(path if path == ":memory:" else str(Path(path).expanduser()))
    if url.startswith(f"{DYNAMO_SCHEME}:"):
        return _parse_dynamo(url)
    raise ValueError(f"{url!r} is not supported: use {SQLITE_FORM} or {DYNAMO_FORM}")


def _parse_dynamo(raw: str) -> DynamoUrl:
    url = _USERINFO.sub("//***@", raw)  # messages never echo credentials put in endpoint_url
    parts = urlsplit(raw)
    if not raw.startswith(f"{DYNAMO_SCHEME}://") or parts.netloc or parts.path not in ("", "/"):
        raise ValueError(f"{url!r}: put every setting in the query, as in "
                         f"{DYNAMO_FORM}")
    if parts.fragment:
        raise ValueError(f"{url!r} has a '#' fragment: use {DYNAMO_FORM}")
    try:
        pairs = parse_qsl(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
    except ValueError as exc:
        raise ValueError(f"{url!r}: the query is malformed: use {DYNAMO_FORM}") from exc
    params: dict[str, str] = {}
    for key, value in pairs:
        if key in params:
            raise ValueError(f"{url!r} gives {key} twice")
        params[key] = value
    unknown = sorted(set(params) - {"region", "table_prefix", "endpoint_url"})
    if unknown:
        raise ValueError(f"{url!r}: unknown parameter(s) {', '.join(unknown)}; "
                         f"use {DYNAMO_FORM}")
    region = params.get("region")
    if region is not None and not _REGION.fullmatch(region):
        raise ValueError(f"{url!r}: region {region!r} is not an AWS region "
                         "name such as eu-west-1")
    prefix = params.get("table_prefix", DEFAULT_TABLE_PREFIX)
    if not _PREFIX.fullmatch(prefix):
        raise ValueError(f"{url!r}: table_prefix {prefix!r} must be 1-200 letters, "
                         "digits, '_', '.' or '-' (DynamoDB table names)")
    endpoint = params.get("endpoint_url")
    if endpoint is not None:
        _check_endpoint(url, endpoint)
    return DynamoUrl(region=region, table_prefix=prefix, endpoint_url=endpoint)


def _check_endpoint(url: str, endpoint: str) -> None:
    parts = urlsplit(endpoint)
    if "@" in parts.netloc:
        raise ValueError(f"{url!r}: endpoint_url must not carry credentials; boto3 "
                         "takes them from the environment, the profile or the instance role")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{url!r}: endpoint_url {endpoint!r} must be "
                         "http://HOST:PORT or https://HOST")
    if parts.query or parts.fragment:
        raise ValueError(f"{url!r}: endpoint_url {endpoint!r} must be "
                         "http://HOST:PORT, without a query or fragment")
