"""Every refusal the API gives is ``{"error": {"type", "message"[, "fields"]}}``.

* a body, query or path that does not validate: 422 ``UsageError`` naming each field;
* FileFerry's refusals (``RefusedError``): 422, a target that exists 409;
* an unknown transfer id or route: 404; no or a wrong token: 401; a policy or
  approval refusal (``NotAuthorized``, ``PolicyDenied``): 403;
* only a bug is a 500 (``InternalError``, logged), never bad input.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from fileferry.api.schemas import ErrorBody, ErrorDetail
from fileferry.errors import (
    FileFerryError,
    InvalidToken,
    LeaseHeld,
    NotAuthorized,
    RefusedError,
    TargetExists,
    TransferFailed,
)

__all__ = ["ApiError", "field_errors", "install_error_handlers", "not_found", "status_for"]

log = logging.getLogger(__name__)
_HTTP_TYPES = {400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound",
               405: "MethodNotAllowed", 409: "Conflict", 413: "TooLarge",
               415: "UnsupportedMediaType", 422: "UsageError"}


class ApiError(Exception):
    """An error answer with its status; ``fields`` names the input that was wrong."""

    def __init__(self, status: int, type_: str, message: str,
                 fields: list[dict[str, str]] | None = None) -> None:
        super().__init__(message)
        self.status, self.type, self.message, self.fields = status, type_, message, fields


def not_found(transfer_id: str) -> ApiError:
    return ApiError(404, "NotFound", f"no transfer {transfer_id}; list them with "
                    "GET /api/transfers")


def status_for(exc: FileFerryError) -> int:
    if isinstance(exc, InvalidToken):
        return 401
    if isinstance(exc, NotAuthorized):  # PolicyDenied, self-approval, not in the group
        return 403
    if isinstance(exc, TargetExists | LeaseHeld):
        return 409
    if isinstance(exc, RefusedError):
        return 422
    if isinstance(exc, TransferFailed):
        return 502
    return 500


@contextlib.contextmanager
def field_errors(field: str) -> Iterator[None]:
    """Turn a FileFerry refusal raised inside into a 4xx naming ``field``."""
    try:
        yield
    except FileFerryError as exc:
        raise ApiError(status_for(exc), exc.name, f"{field}: {exc}",
                       [{"field": field, "message": str(exc)}]) from exc


def _field_name(loc: Sequence[Any]) -> str:
    parts = list(loc[1:]) if loc and loc[0] in ("body", "query", "path", "header") else list(loc)
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "body"


def _body(status: int, type_: str, message: str,
          fields: list[dict[str, str]] | None = None,
          headers: dict[str, str] | None = None) -> JSONResponse:
    body = ErrorBody(error=ErrorDetail(type=type_, message=message, fields=fields))
    return JSONResponse(body.model_dump(exclude_none=True), status_code=status,
                        headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        fields = [{"field": _field_name(e.get("loc", ())),
                   "message": str(e.get("msg", "invalid")).removeprefix("Value error, ")}
                  for e in exc.errors()]
        message = "; ".join(f"{f['field']}: {f['message']}" for f in fields)
        return _body(422, "UsageError", message or "the request is not valid", fields)

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return _body(exc.status, exc.type, exc.message, exc.fields)

    @app.exception_handler(FileFerryError)
    async def refused(request: Request, exc: FileFerryError) -> JSONResponse:
        return _body(status_for(exc), exc.name, str(exc))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _body(exc.status_code, _HTTP_TYPES.get(exc.status_code, "HTTPError"),
                     str(exc.detail), headers=dict(exc.headers or {}))

    @app.exception_handler(Exception)
    async def bug(request: Request, exc: Exception) -> JSONResponse:
        log.error("unexpected error on %s %s", request.method, request.url.path,
                  exc_info=exc)
        return _body(500, "InternalError", "internal error; the server log has the details")
