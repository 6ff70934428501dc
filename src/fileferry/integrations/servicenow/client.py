"""A ServiceNow Table API client: auth, retries, a circuit breaker and idempotent inserts.

Sync ``requests`` run in a worker thread (``asyncio.to_thread``), one request at a time.

Errors, mapped onto FileFerry's tree (the ASL names stay the tree's):

* timeouts, connection errors, 5xx, 429 after ``attempts`` tries, an open circuit
  breaker → :class:`~fileferry.errors.EndpointUnavailable` (retryable);
* 401 (basic auth, or OAuth after one token refresh), a refused token request →
  :class:`~fileferry.errors.AuthenticationFailed`;
* 403 (ACL or data policy) → :class:`~fileferry.errors.PermissionDenied`;
* TLS verification failures → :class:`~fileferry.errors.CertificateError`;
* any other 4xx (400 unknown table / bad body, 404, 405, 415), or a body that is not
  the Table API's JSON → :class:`~fileferry.errors.DestinationError` (permanent).

Nothing logged or raised carries a password, client secret or token.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import requests

from fileferry.errors import (
    AuthenticationFailed,
    CertificateError,
    DestinationError,
    EndpointUnavailable,
    FileFerryError,
    PermissionDenied,
)
from fileferry.integrations.http import retry_after_seconds
from fileferry.integrations.servicenow.settings import ServiceNowSettings

__all__ = [
    "BACKOFF_BASE",
    "BACKOFF_CAP",
    "TOKEN_MARGIN",
    "CircuitBreaker",
    "ServiceNowClient",
    "Sleep",
]

log = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[None]]
Clock = Callable[[], float]
BACKOFF_BASE = 0.5
BACKOFF_CAP = 30.0
TOKEN_MARGIN = 60.0  # refresh an access token this many seconds before it expires
PAGE = 100


class _Transient(Exception):
    """One attempt failed in a way another attempt may fix."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class CircuitBreaker:
    """Closed → open after ``threshold`` consecutive failed attempts; open fails fast for
    ``cooldown`` seconds, then half-open lets one trial through (success closes it,
    failure opens it again)."""

    def __init__(self, threshold: int, cooldown: float, clock: Clock) -> None:
        self.threshold = threshold
        self.cooldown = cooldown
        self._clock = clock
        self.failures = 0
        self.opened_at: float | None = None

    @property
    def state(self) -> str:
        if self.opened_at is None:
            return "closed"
        return "open" if self._clock() < self.opened_at + self.cooldown else "half-open"

    def before(self) -> None:
        if self.state == "open":
            assert self.opened_at is not None
            left = self.opened_at + self.cooldown - self._clock()
            raise EndpointUnavailable(f"ServiceNow circuit breaker open after {self.failures} "
                                      f"consecutive failures; retrying in {left:.0f} s")

    def success(self) -> None:
        if self.opened_at is not None:
            log.info("ServiceNow circuit breaker closed")
        self.failures = 0
        self.opened_at = None

    def failure(self) -> None:
        self.failures += 1
        if self.opened_at is not None or self.failures >= self.threshold:
            if self.opened_at is None:
                log.warning("ServiceNow circuit breaker open after %d consecutive failures",
                            self.failures)
            self.opened_at = self._clock()  # (re)open: half-open trial failed too



def _error_text(response: requests.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.reason or ""
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        error = body["error"]
        message = str(error.get("message") or "")
        detail = error.get("detail")
        return f"{message}: {' '.join(str(detail).split())}" if detail else message
    if isinstance(body, dict) and "error" in body:  # the token endpoint's shape
        return str(body.get("error_description") or body["error"])
    return response.reason or ""


class ServiceNowClient:
    """The Table API of one instance (``/api/now/v2/table``)."""

    def __init__(self, settings: ServiceNowSettings, *, sleep: Sleep = asyncio.sleep,
                 clock: Clock = time.time, rng: random.Random | None = None,
                 session: requests.Session | None = None) -> None:
        self.settings = settings
        self._sleep = sleep
        self._clock = clock
        self._rng = rng or random.Random()
        self._owns_session = session is None
        self._session = session or requests.Session()
        self._session.verify = str(settings.ca_file) if settings.ca_file else settings.verify_tls
        self.breaker = CircuitBreaker(settings.breaker_threshold, settings.breaker_cooldown,
                                      clock)
        self._base = f"{settings.instance_url}/api/now/v2/table"
        self._access: str | None = None
        self._access_expires = 0.0
        self._refresh: str | None = None
        self._token_lock = asyncio.Lock()
        self.token_requests = 0  # grants asked for (for tests and metrics)
        self.last_retry_after: float | None = None  # of the last transient failure

    async def close(self) -> None:
        if self._owns_session:
            self._session.close()

    async def __aenter__(self) -> ServiceNowClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- one exchange ----------------------------------------------------------------------

    async def _once(self, method: str, url: str, *, params: Mapping[str, str] | None = None,
                    json_body: Any = None, form: Mapping[str, str] | None = None,
                    headers: Mapping[str, str]) -> requests.Response:
        """One HTTP exchange through the breaker; raises _Transient when another may help."""
        self.breaker.before()
        try:
            response = await asyncio.to_thread(
                self._session.request, method, url, params=params, json=json_body, data=form,
                headers=dict(headers), timeout=self.settings.timeout, allow_redirects=False)
        except requests.exceptions.SSLError as exc:
            raise CertificateError(f"ServiceNow TLS: {type(exc).__name__}: "
                                   "the instance's certificate is not trusted") from exc
        except (requests.Timeout, requests.ConnectionError) as exc:
            self.breaker.failure()
            kind = "timed out" if isinstance(exc, requests.Timeout) else "connection failed"
            raise _Transient(f"{method} {url}: {kind}") from exc
        status = response.status_code
        if status >= 500:
            self.breaker.failure()
            raise _Transient(f"{method} {url}: {status} {_error_text(response)}",
                             retry_after_seconds(response.headers.get("Retry-After"), time.time()))
        self.breaker.success()
        if status == 429:
            raise _Transient(f"{method} {url}: 429 {_error_text(response)}",
                             retry_after_seconds(response.headers.get("Retry-After"), time.time()))
        return response

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self.settings.max_retry_after)
        ceiling = min(BACKOFF_CAP, BACKOFF_BASE * 2 ** (attempt - 1))
        return self._rng.uniform(ceiling / 2, ceiling)

    # -- authentication --------------------------------------------------------------------

    @property
    def _oauth(self) -> bool:
        return self.settings.auth != "basic"

    async def _authorization(self) -> str:
        s = self.settings
        if not self._oauth:
            assert s.username is not None and s.password is not None
            pair = f"{s.username}:{s.password.get_secret_value()}".encode()
            return "Basic " + base64.b64encode(pair).decode()
        async with self._token_lock:
            if self._access is None or self._clock() >= self._access_expires - TOKEN_MARGIN:
                await self._fetch_token()
        assert self._access is not None
        return f"Bearer {self._access}"

    async def _fetch_token(self) -> None:
        s = self.settings
        assert s.client_id is not None and s.client_secret is not None
        base = {"client_id": s.client_id, "client_secret": s.client_secret.get_secret_value()}
        if self._refresh is not None:
            refresh, self._refresh = self._refresh, None
            if await self._grant({**base, "grant_type": "refresh_token",
                                  "refresh_token": refresh}, required=False):
                return
        if s.auth == "oauth_password":
            assert s.username is not None and s.password is not None
            form = {**base, "grant_type": "password", "username": s.username,
                    "password": s.password.get_secret_value()}
        else:
            form = {**base, "grant_type": "client_credentials"}
        await self._grant(form, required=True)

    async def _grant(self, form: dict[str, str], *, required: bool) -> bool:
        url = f"{self.settings.instance_url}/oauth_token.do"
        grant = form["grant_type"]
        for attempt in range(1, self.settings.attempts + 1):
            self.token_requests += 1
            try:
                response = await self._once("POST", url, form=form,
                                            headers={"Accept": "application/json"})
            except _Transient as exc:
                if attempt == self.settings.attempts:
                    raise EndpointUnavailable(f"ServiceNow OAuth ({grant}): {exc} after "
                                              f"{attempt} attempt(s)") from exc
                await self._sleep(self._delay(attempt, exc.retry_after))
                continue
            if response.status_code == 200:
                try:
                    body = response.json()
                    self._access = str(body["access_token"])
                    expires_in = float(body.get("expires_in") or 3600)
                except (ValueError, KeyError, TypeError) as exc:
                    raise DestinationError(f"ServiceNow OAuth ({grant}): the token response "
                                           "is not JSON with an access_token") from exc
                self._access_expires = self._clock() + expires_in
                self._refresh = body.get("refresh_token") or self._refresh
                log.debug("ServiceNow OAuth %s grant: token for %.0f s", grant, expires_in)
                return True
            if not required:
                log.info("ServiceNow OAuth refresh refused (%d); asking for a new grant",
                         response.status_code)
                return False
            if response.status_code in (400, 401):
                raise AuthenticationFailed(f"ServiceNow OAuth ({grant}) refused: "
                                           f"{response.status_code} {_error_text(response)}")
            raise DestinationError(f"ServiceNow OAuth ({grant}): {response.status_code} "
                                   f"{_error_text(response)}")
        raise AssertionError("unreachable")  # pragma: no cover

    # -- the Table API ---------------------------------------------------------------------

    async def request(self, method: str, path: str, *, params: Mapping[str, str] | None = None,
                      body: Mapping[str, Any] | None = None, retry: bool = True) -> Any:
        """``result`` of a Table API call on ``path`` (``"incident"``, ``"incident/<id>"``).

        ``retry=False``: one attempt only (a write whose outcome would be unknown)."""
        url = f"{self._base}/{path}"
        attempts = self.settings.attempts if retry else 1
        reauthed = False
        attempt = 0
        while True:
            attempt += 1
            headers = {"Accept": "application/json"}
            if body is not None:
                headers["Content-Type"] = "application/json"
            headers["Authorization"] = await self._authorization()
            try:
                response = await self._once(method, url, params=params, json_body=body,
                                            headers=headers)
            except _Transient as exc:
                self.last_retry_after = exc.retry_after
                if attempt >= attempts:
                    raise EndpointUnavailable(f"ServiceNow {exc} (after {attempt} "
                                              "attempt(s))") from exc
                log.info("ServiceNow %s %s: %s; retrying", method, path, exc)
                await self._sleep(self._delay(attempt, exc.retry_after))
                continue
            if response.status_code == 401 and self._oauth and not reauthed:
                reauthed = True  # an expired or revoked token: refresh once
                self._access = None
                attempt -= 1
                continue
            return self._result(method, path, response)

    @staticmethod
    def _result(method: str, path: str, response: requests.Response) -> Any:
        status = response.status_code
        where = f"ServiceNow {method} {path}"
        if status == 204:
            return None
        if 200 <= status < 300:
            try:
                return response.json()["result"]
            except (ValueError, KeyError, TypeError) as exc:
                raise DestinationError(f"{where}: {status} without a JSON result") from exc
        text = f"{where}: {status} {_error_text(response)}"
        error: FileFerryError
        if status == 401:
            error = AuthenticationFailed(text)
        elif status == 403:
            error = PermissionDenied(text)
        else:
            error = DestinationError(text)
        raise error

    async def query(self, table: str, query: str, fields: list[str], *,
                    limit: int = PAGE, offset: int = 0) -> list[dict[str, Any]]:
        params = {"sysparm_query": query, "sysparm_fields": ",".join(fields),
                  "sysparm_limit": str(limit), "sysparm_offset": str(offset),
                  "sysparm_exclude_reference_link": "true",
                  "sysparm_suppress_pagination_header": "true"}
        rows = await self.request("GET", table, params=params)
        if not isinstance(rows, list):
            raise DestinationError(f"ServiceNow GET {table}: the result is not a list")
        return [r for r in rows if isinstance(r, dict)]

    async def find_exact(self, table: str, field: str, value: str, fields: list[str], *,
                         max_rows: int = 10_000) -> list[dict[str, Any]]:
        """Rows whose ``field`` is exactly ``value``, oldest first.

        Every returned row is re-checked: an instance ignores query terms on fields it
        does not know (or may not show), and then matches every row; such rows are
        dropped and the next page read, so a match beyond the first page is still found.
        """
        wanted = list(dict.fromkeys([*fields, field, "sys_created_on"]))
        found: list[dict[str, Any]] = []
        offset = 0
        while offset < max_rows:
            page = await self.query(table, f"{field}={value}^ORDERBYsys_created_on", wanted,
                                    offset=offset)
            found += [r for r in page if str(r.get(field, "")) == value]
            if len(page) < PAGE or found:
                break
            offset += PAGE
        return sorted(found, key=lambda r: (str(r.get("sys_created_on", "")),
                                            str(r.get("number", ""))))

    async def get(self, table: str, sys_id: str, fields: list[str], *,
                  display_value: str = "false") -> dict[str, Any]:
        result = await self.request("GET", f"{table}/{sys_id}", params={
            "sysparm_fields": ",".join(fields), "sysparm_display_value": display_value,
            "sysparm_exclude_reference_link": "true"})
        if not isinstance(result, dict):
            raise DestinationError(f"ServiceNow GET {table}/{sys_id}: not a record")
        return result

    async def patch(self, table: str, sys_id: str, fields: Mapping[str, Any]) -> dict[str, Any]:
        """A PATCH merges, so repeating one is harmless (journal fields aside)."""
        result = await self.request("PATCH", f"{table}/{sys_id}", body=dict(fields),
                                    params={"sysparm_exclude_reference_link": "true"})
        return result if isinstance(result, dict) else {}

    async def ensure_ticket(self, table: str, correlation_id: str, fields: Mapping[str, Any],
                            *, field: str = "correlation_id") -> tuple[str, str]:
        """``(sys_id, number)`` of the record carrying ``correlation_id``, inserted if none.

        Looks up first (oldest wins when several exist). A POST is never retried
        blindly: after a timeout, a dropped connection, a 5xx or a 429 its outcome is
        unknown, so the record is looked up again and inserted only if still absent.
        """
        last: EndpointUnavailable | None = None
        for attempt in range(1, self.settings.attempts + 1):
            rows = await self.find_exact(table, field, correlation_id, ["sys_id", "number"])
            if rows:
                if len(rows) > 1:
                    log.warning("ServiceNow %s: %d records carry %s %s; using the oldest, %s",
                                table, len(rows), field, correlation_id, rows[0].get("number"))
                return str(rows[0]["sys_id"]), str(rows[0].get("number", ""))
            self.last_retry_after = None
            try:
                record = await self.request(
                    "POST", table, body={**fields, field: correlation_id}, retry=False,
                    params={"sysparm_exclude_reference_link": "true",
                            "sysparm_fields": "sys_id,number"})
            except EndpointUnavailable as exc:
                last = exc
                log.warning("ServiceNow insert of %s: outcome unknown (%s); looking it up "
                            "again", correlation_id, exc)
                if attempt < self.settings.attempts:
                    await self._sleep(self._delay(attempt, self.last_retry_after))
                continue
            if not isinstance(record, dict) or not record.get("sys_id"):
                raise DestinationError(f"ServiceNow POST {table}: no sys_id in the result")
            return str(record["sys_id"]), str(record.get("number", ""))
        rows = await self.find_exact(table, field, correlation_id, ["sys_id", "number"])
        if rows:
            return str(rows[0]["sys_id"]), str(rows[0].get("number", ""))
        assert last is not None
        raise last
