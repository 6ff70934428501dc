"""A small client of the API for the CLI's ``--api URL``: the same JSON bodies the
local store gives, and the server's refusals turned back into FileFerry errors."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx

from fileferry.config import Settings
from fileferry.errors import (
    AuthenticationFailed,
    EndpointUnavailable,
    FileFerryError,
    UsageError,
)

__all__ = ["ApiClient", "local_view"]


class ApiClient:
    """``ApiClient(url, token)``: ``token`` from ``--token`` or ``$FILEFERRY_TOKEN``."""

    def __init__(self, url: str, token: str | None, timeout: float = 30.0) -> None:
        if not url.startswith(("http://", "https://")):
            raise UsageError(f"--api {url!r} must be the server's http(s):// URL, e.g. "
                             "http://127.0.0.1:8080")
        if not token:
            raise UsageError("--api needs the server's token: pass --token or set "
                             "FILEFERRY_TOKEN (see `fileferry serve` for where it is)")
        self._url = url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {token}"}
        self._timeout = timeout

    def _call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        try:
            answer = httpx.request(method, self._url + path, headers=self._headers,
                                   timeout=self._timeout, **kwargs)
        except httpx.HTTPError as exc:
            raise EndpointUnavailable(f"cannot reach the FileFerry API at {self._url}: "
                                      f"{exc}") from exc
        try:
            body: dict[str, Any] = answer.json()
        except ValueError:
            body = {}
        if answer.is_success:
            return body
        error = body.get("error") or {}
        message = str(error.get("message") or answer.reason_phrase)
        if answer.status_code == 401:
            raise AuthenticationFailed(f"{self._url} refused the token ({message})")
        if answer.status_code < 500:
            raise UsageError(message)
        raise FileFerryError(f"{self._url} answered {answer.status_code}: {message}")

    def list(self, **params: Any) -> dict[str, Any]:
        return self._call("GET", "/api/transfers",
                          params={k: v for k, v in params.items() if v is not None})

    def get(self, transfer_id: str) -> dict[str, Any]:
        return self._call("GET", f"/api/transfers/{quote(transfer_id, safe='')}")

    def cancel(self, transfer_id: str) -> dict[str, Any]:
        return self._call("POST", f"/api/transfers/{quote(transfer_id, safe='')}/cancel")


async def local_view(settings: Settings, transfer_id: str | None,
                     query: dict[str, Any]) -> dict[str, Any]:
    """The API's body, from the local store: one transfer, or a page of them."""
    from fileferry.services import transfer_public, transfers_public
    from fileferry.store import open_store

    store = open_store(settings.store.url)
    try:
        if transfer_id is None:
            try:
                page = await transfers_public(settings, store, **query)
            except ValueError as exc:
                raise UsageError(f"--cursor: {exc}") from None
            return page.model_dump(mode="json")
        view = await transfer_public(settings, store, transfer_id)
        if view is None:
            raise UsageError(f"no transfer {transfer_id} in {settings.store.url}")
        return view.model_dump(mode="json")
    finally:
        await store.close()
