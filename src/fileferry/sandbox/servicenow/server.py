"""The ServiceNow Table API emulator: routing, auth, OAuth, rate limits and fault injection.

Served by ``transport.HttpServer`` (stdlib, HTTP/1.1 keep-alive, a thread per connection,
optional TLS) on 127.0.0.1. Test code steers it through ``ServiceNowEmulator``.
"""

from __future__ import annotations

import base64
import json
import math
import re
import secrets
import ssl
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import parse_qs, urlencode

from fileferry.sandbox.http import HttpStandIn
from fileferry.sandbox.servicenow.query import parse_query
from fileferry.sandbox.servicenow.store import ApiError, Store
from fileferry.sandbox.servicenow.transport import HttpServer, Response, error_response

__all__ = ["LoggedRequest", "ServiceNowEmulator"]

_ROUTE = re.compile(r"^/api/now(?:/(v1|v2))?/table/([^/]+)(?:/([^/]+))?/?$")
_NOT_AUTHENTICATED = ApiError(401, "User is not authenticated",
                              "Required to provide Auth information",
                              {"WWW-Authenticate": 'Basic realm="Service-now"'})


class LoggedRequest(NamedTuple):
    """One handled request; ``status`` is 0 when the connection was dropped on purpose."""

    method: str
    path: str
    status: int


@dataclass
class _Token:
    user: str
    expires_at: float
    client_id: str


@dataclass
class _Faults:
    fail_count: int = 0
    fail_status: int = 503
    fail_retry_after: int | None = None
    fail_prefix: str = "/api/"
    delay_seconds: float = 0.0
    delay_count: int | None = None
    delay_prefix: str = "/api/"
    drop_count: int = 0
    rate_requests: int | None = None
    rate_seconds: float = 3600.0
    rate_rule: str = field(default_factory=lambda: uuid.uuid4().hex)
    windows: dict[str, tuple[float, int]] = field(default_factory=dict)


class ServiceNowEmulator(HttpStandIn):
    """A ServiceNow Table API stand-in on 127.0.0.1 with fault injection for tests.

    ``tls=(cert_file, key_file)`` serves HTTPS (pysnc refuses plain http URLs).
    """

    def __init__(self, *, username: str = "admin", password: str | None = None,
                 client_id: str | None = None, client_secret: str | None = None,
                 tls: tuple[str | Path, str | Path] | None = None,
                 access_token_ttl: float = 1800, refresh_token_ttl: float = 8_640_000,
                 client_credentials: bool = True, strict_queries: bool = False) -> None:
        super().__init__()
        self.username = username
        self.password = password or secrets.token_urlsafe(12)
        self.client_id = client_id or uuid.uuid4().hex
        self.client_secret = client_secret or secrets.token_urlsafe(16)
        self.access_token_ttl = access_token_ttl
        self.refresh_token_ttl = refresh_token_ttl
        self.client_credentials = client_credentials
        self.store = Store(strict_queries=strict_queries)
        self._tls = tls
        self._lock = threading.Lock()
        self._faults = _Faults()
        self._log_entries: list[LoggedRequest] = []
        self._passwords: dict[str, str] = {username: self.password}
        self._access: dict[str, _Token] = {}
        self._refresh: dict[str, _Token] = {}
        self._clock_offset = 0.0
        self.url = ""
        self.add_user(username, "System Administrator")

    # -- lifecycle -------------------------------------------------------------------------

    def _make_server(self) -> tuple[HttpServer, str]:
        context = None
        if self._tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(str(self._tls[0]), str(self._tls[1]))
        server = HttpServer(self, context)
        return server, f"servicenow-emulator-{server.port}"

    def _started(self, port: int) -> None:
        self.url = f"{'https' if self._tls is not None else 'http'}://127.0.0.1:{port}"

    # -- seeding and inspection ------------------------------------------------------------

    def add_record(self, table: str, **fields: Any) -> str:
        with self.store.lock:
            return self.store.insert(table, fields, "system")["sys_id"]

    def add_user(self, user_name: str, name: str, *, password: str | None = None,
                 **fields: Any) -> str:
        """Seed a ``sys_user``; with ``password`` it can also log in with basic auth."""
        if password is not None:
            self._passwords[user_name] = password
        first, _, last = name.partition(" ")
        fields = {"first_name": first, "last_name": last, **fields}
        return self.add_record("sys_user", user_name=user_name, name=name, **fields)

    def add_group(self, name: str, **fields: Any) -> str:
        return self.add_record("sys_user_group", name=name, **fields)

    def records(self, table: str) -> list[dict[str, str]]:
        """Raw stored records (all values strings), for assertions."""
        return self.store.snapshot(table)

    @property
    def request_log(self) -> list[LoggedRequest]:
        with self._lock:
            return list(self._log_entries)

    # -- fault injection -------------------------------------------------------------------

    def fail_next(self, n: int = 1, status: int = 503, *, retry_after: int | None = None,
                  path_prefix: str = "/api/") -> None:
        """Answer the next ``n`` requests under ``path_prefix`` with ``status``."""
        with self._lock:
            f = self._faults
            f.fail_count, f.fail_status, f.fail_retry_after = n, status, retry_after
            f.fail_prefix = path_prefix

    def delay(self, seconds: float, n: int | None = None, *, path_prefix: str = "/api/") -> None:
        """Hold each request (the next ``n``, or all until ``delay(0)``) for ``seconds``."""
        with self._lock:
            f = self._faults
            f.delay_seconds, f.delay_count, f.delay_prefix = seconds, n, path_prefix

    def rate_limit(self, requests: int | None, per_seconds: float = 3600.0) -> None:
        """Allow ``requests`` Table API calls per user per window; None switches it off."""
        with self._lock:
            f = self._faults
            f.rate_requests, f.rate_seconds = requests, per_seconds
            f.windows.clear()

    def drop_after_commit(self, n: int = 1) -> None:
        """Commit the next ``n`` Table API POSTs, then close the connection without answering."""
        with self._lock:
            self._faults.drop_count = n

    def clear_faults(self) -> None:
        with self._lock:
            self._faults = _Faults()

    def advance_clock(self, seconds: float) -> None:
        """Move the token-expiry and rate-limit clock forward."""
        with self._lock:
            self._clock_offset += seconds

    def _now(self) -> float:
        return time.time() + self._clock_offset

    def log(self, method: str, path: str, status: int) -> None:
        with self._lock:
            self._log_entries.append(LoggedRequest(method, path, status))

    # -- request handling ------------------------------------------------------------------

    def handle(self, method: str, path: str, query: str, headers: dict[str, str],
                body: bytes) -> Response:
        headers = {k.lower(): v for k, v in headers.items()}
        with self._lock:
            f = self._faults
            wait = 0.0
            if f.delay_seconds > 0 and path.startswith(f.delay_prefix) \
                    and f.delay_count != 0:
                wait = f.delay_seconds
                if f.delay_count is not None:
                    f.delay_count -= 1
            failure: Response | None = None
            if f.fail_count > 0 and path.startswith(f.fail_prefix):
                f.fail_count -= 1
                failure = error_response(ApiError(
                    f.fail_status, "Transaction cancelled: maximum execution time exceeded"
                    if f.fail_status in (500, 503) else "Injected failure",
                    "Injected by ServiceNowEmulator.fail_next"))
                if f.fail_retry_after is not None:
                    failure.headers["Retry-After"] = str(f.fail_retry_after)
        if wait and self._stopping.wait(wait):
            return Response(503, None, drop=True)
        if failure is not None:
            return failure
        try:
            if path == "/oauth_token.do":
                if method != "POST":
                    raise ApiError(405, "Method not Supported", "Requested method not allowed")
                return self._oauth(headers, body)
            route = _ROUTE.match(path)
            if route is None:
                raise ApiError(400, "Requested URI does not represent any resource", None)
            user = self._authenticate(headers)
            limit_headers = self._check_rate(user)
            response = self._table(method, route[1] or "", route[2], route[3], query,
                                   headers, body, user)
            response.headers.update(limit_headers)
            return response
        except ApiError as error:
            return error_response(error)

    def _authenticate(self, headers: dict[str, str]) -> str:
        scheme, _, credentials = headers.get("authorization", "").partition(" ")
        if scheme.lower() == "basic":
            try:
                user, _, password = base64.b64decode(credentials).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                raise _NOT_AUTHENTICATED from None
            if user in self._passwords and secrets.compare_digest(self._passwords[user],
                                                                  password):
                return user
        elif scheme.lower() == "bearer":
            with self._lock:
                token = self._access.get(credentials.strip())
            if token is not None and token.expires_at > self._now():
                return token.user
        raise _NOT_AUTHENTICATED

    def _check_rate(self, user: str) -> dict[str, str]:
        with self._lock:
            f = self._faults
            if f.rate_requests is None:
                return {}
            now = self._now()
            start, count = f.windows.get(user, (now, 0))
            if now >= start + f.rate_seconds:
                start, count = now, 0
            reset = start + f.rate_seconds
            headers = {"X-RateLimit-Limit": str(f.rate_requests),
                       "X-RateLimit-Reset": str(math.ceil(reset)),
                       "X-RateLimit-Rule": f.rate_rule}
            if count >= f.rate_requests:
                per = "hour" if f.rate_seconds == 3600 else f"{f.rate_seconds:g} seconds"
                raise ApiError(429, "Rate limit exceeded",
                               f"Rate limit of {f.rate_requests} requests per {per} for "
                               "Table API exceeded",
                               {**headers, "Retry-After": str(max(1, math.ceil(reset - now)))})
            f.windows[user] = (start, count + 1)
            return headers

    def _oauth(self, headers: dict[str, str], body: bytes) -> Response:
        denied = Response(401, {"error_description": "access_denied", "error": "server_error"})
        form = {k: v[0] for k, v in parse_qs(body.decode(errors="replace")).items()}
        scheme, _, credentials = headers.get("authorization", "").partition(" ")
        if scheme.lower() == "basic" and "client_id" not in form:  # RFC 6749 client auth
            try:
                pair = base64.b64decode(credentials).decode(errors="replace")
            except ValueError:
                return denied
            cid, _, csecret = pair.partition(":")
            form.update(client_id=cid, client_secret=csecret)
        if form.get("client_id") != self.client_id or not secrets.compare_digest(
                form.get("client_secret", ""), self.client_secret):
            return denied
        grant = form.get("grant_type")
        now = self._now()
        refresh: str | None = None
        with self._lock:
            if grant == "password":
                user = form.get("username", "")
                if self._passwords.get(user) != form.get("password"):
                    return denied
                refresh = secrets.token_urlsafe(32)
                self._refresh[refresh] = _Token(user, now + self.refresh_token_ttl,
                                                self.client_id)
            elif grant == "refresh_token":
                refresh = form.get("refresh_token", "")
                old = self._refresh.get(refresh)
                if old is None or old.expires_at <= now:
                    return denied
                user = old.user
            elif grant == "client_credentials" and self.client_credentials:
                user = self.username  # the entity's "OAuth Application User"
            else:
                return denied
            access = secrets.token_urlsafe(32)
            self._access[access] = _Token(user, now + self.access_token_ttl, self.client_id)
        result: dict[str, Any] = {"access_token": access, "scope": "useraccount",
                                  "token_type": "Bearer",
                                  "expires_in": int(self.access_token_ttl)}
        if refresh is not None:
            result["refresh_token"] = refresh
        return Response(200, result, {"Cache-Control": "no-store"})

    def _table(self, method: str, version: str, table: str, sys_id: str | None, query: str,
               headers: dict[str, str], body: bytes, user: str) -> Response:
        params = {k: v[-1] for k, v in parse_qs(query, keep_blank_values=True).items()}
        accept = headers.get("accept")
        if accept is None:
            raise ApiError(400, "Exception while reading request", "Accept header is missing")
        if not any(t in accept for t in ("application/json", "*/*", "application/*")):
            raise ApiError(406, "Not Acceptable", f"Unsupported Accept: {accept}")
        store = self.store
        store.table(table)
        mode = params.get("sysparm_display_value", "false").lower()
        mode = mode if mode in ("true", "false", "all") else "false"
        exclude = params.get("sysparm_exclude_reference_link", "false").lower() == "true"
        fields = [f.strip() for f in params.get("sysparm_fields", "").split(",") if f.strip()]
        quiet = headers.get("x-no-response-body", "").lower() == "true"

        def one(record: dict[str, str]) -> dict[str, Any]:
            return store.render(table, record, self.url, fields, mode, exclude)

        if method in ("GET", "HEAD"):
            with store.lock:
                if sys_id is None:
                    return self._list(table, version, params, one)
                record = store.get(table, sys_id)
                if record is None:
                    raise ApiError(404, "No Record found",
                                   "Record doesn't exist or ACL restricts the record retrieval")
                return Response(200, {"result": one(record)})
        if method == "DELETE" and sys_id is not None:
            with store.lock:
                store.delete(table, sys_id)
            return Response(204)
        if method not in ("POST", "PUT", "PATCH") or (method == "POST") != (sys_id is None):
            raise ApiError(405, "Method not Supported", "Requested method not allowed")
        data = self._json_body(headers, body)
        input_display = params.get("sysparm_input_display_value", "").lower() == "true"
        with store.lock:
            if sys_id is None:
                record = store.insert(table, data, user, input_display)
                status = 201
            else:
                record = store.update(table, sys_id, data, user, input_display)
                status = 200
            rendered = one(record)
            drop = False
            if status == 201:
                with self._lock:
                    if self._faults.drop_count > 0:
                        self._faults.drop_count -= 1
                        drop = True
        extra = {"Location": f"{self.url}/api/now/table/{table}/{record['sys_id']}"} \
            if status == 201 else {}
        return Response(status, None if quiet else {"result": rendered}, extra, drop=drop)

    @staticmethod
    def _json_body(headers: dict[str, str], body: bytes) -> dict[str, Any]:
        content_type = headers.get("content-type")
        if content_type is None:
            raise ApiError(400, "Exception while reading request", "Content-Type is missing")
        if content_type.split(";")[0].strip().lower() != "application/json":
            raise ApiError(415, "Unsupported Media Type",
                           f"Content-Type {content_type} is not supported")
        try:
            data = json.loads(body or b"null")
        except (ValueError, UnicodeDecodeError) as exc:
            raise ApiError(400, "Exception while reading request", str(exc)) from None
        if isinstance(data, list):
            data = data[0] if data else None  # one record per write; the rest is ignored
        if not isinstance(data, dict):
            raise ApiError(400, "Exception while reading request",
                           "The payload is not a JSON object")
        return data

    def _list(self, table: str, version: str, params: dict[str, str],
              one: Any) -> Response:
        try:
            limit = int(params.get("sysparm_limit") or 10000)
            offset = int(params.get("sysparm_offset") or 0)
        except ValueError:
            raise ApiError(400, "Exception while reading request",
                           "sysparm_limit and sysparm_offset must be integers") from None
        if offset < 0 or limit < 0:
            raise ApiError(400, "Exception while reading request",
                           "sysparm_offset must not be negative")
        encoded = params.get("sysparm_query")
        plain = {} if encoded else {k: v for k, v in params.items()
                                    if not k.startswith("sysparm_")}
        rows = self.store.select(table, parse_query(encoded or ""), plain)
        total = len(rows)
        page = rows[offset:offset + limit]
        if not page and version == "v1":
            raise ApiError(404, "No Record found", "Records matching query not found")
        headers: dict[str, str] = {}
        if params.get("sysparm_no_count", "").lower() != "true":
            headers["X-Total-Count"] = str(total)
        if params.get("sysparm_suppress_pagination_header", "").lower() != "true" and limit:
            headers["Link"] = self._links(table, version, params, offset, limit, total)
        return Response(200, {"result": [one(r) for r in page]}, headers)

    def _links(self, table: str, version: str, params: dict[str, str], offset: int, limit: int,
               total: int) -> str:
        base = f"{self.url}/api/now{'/' + version if version else ''}/table/{table}"

        def link(at: int, rel: str) -> str:
            query = urlencode({**params, "sysparm_offset": at, "sysparm_limit": limit})
            return f'<{base}?{query}>;rel="{rel}"'

        last = max(0, (total - 1) // limit * limit)
        parts = [link(0, "first")]
        if offset > 0:
            parts.append(link(max(0, offset - limit), "prev"))
        if offset + limit < total:
            parts.append(link(offset + limit, "next"))
        parts.append(link(last, "last"))
        return ",".join(parts)
