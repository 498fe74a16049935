"""The contract's error envelope, and the one place that maps our exceptions (and the
framework's) to it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Any

import orjson
import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.types import Scope

from orchestrator.context import current_request_id
from orchestrator.db import DatabaseUnavailable
from orchestrator.errors import ApiError, ServiceUnavailable, Unprocessable

log = structlog.get_logger(__name__)


def error_body(
    *,
    status: int,
    message: str,
    path: str,
    method: str,
    error_type: str | None = None,
    details: Sequence[Mapping[str, str]] | None = None,
) -> bytes:
    """The contract's envelope, serialised."""
    if error_type is None:
        error_type = "internal_server_error" if status >= 500 else "http_exception"
    error: dict[str, Any] = {
        "type": error_type,
        "code": status,
        "message": message,
        "path": path,
        "method": method,
        "request_id": current_request_id(),
    }
    if details is not None:
        error["details"] = list(details)
    return orjson.dumps({"error": error})


def error_response(
    scope: Scope,
    status: int,
    message: str,
    *,
    error_type: str | None = None,
    details: Sequence[Mapping[str, str]] | None = None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    body = error_body(
        status=status,
        message=message,
        path=scope.get("path", ""),
        method=scope.get("method", "GET"),
        error_type=error_type,
        details=details,
    )
    return Response(body, status_code=status, media_type="application/json", headers=headers)


_MAX_FIELD = 100


def _field(error: Mapping[str, Any]) -> str:
    loc: Sequence[Any] = error.get("loc", ())
    if error.get("type") == "json_invalid":
        return "body"  # the location is a character offset, not a field
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    # An unexpected field's name comes from the client: keep it short.
    return ".".join(parts)[:_MAX_FIELD] or str(loc[0] if loc else "body")


def validation_details(errors: Sequence[Mapping[str, Any]]) -> list[dict[str, str]]:
    """Field and reason for each problem; never the submitted value."""
    return [{"field": _field(e), "reason": str(e.get("msg", ""))} for e in errors]


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    details = exc.details if isinstance(exc, Unprocessable) else None
    return error_response(
        request.scope,
        exc.status_code,
        exc.message,
        error_type="validation_error" if exc.status_code == 422 else None,
        details=details,
        headers=exc.headers,
    )


async def _http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    status = exc.status_code
    message = exc.detail if isinstance(exc.detail, str) else HTTPStatus(status).phrase
    if status == 404 and message == "Not Found":
        message = "No such resource"
    if status == 405:
        message = "Method not allowed"  # `Allow` is set by AllowHeaderMiddleware, for every 405
    return error_response(request.scope, status, message, headers=exc.headers)


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    return error_response(
        request.scope,
        422,
        "The request is not valid",
        error_type="validation_error",
        details=validation_details(exc.errors()),
    )


async def _unavailable(request: Request, exc: Exception) -> Response:
    log.warning("database_unavailable", error=str(exc))
    return error_response(
        request.scope, 503, ServiceUnavailable.default_message, headers={"Retry-After": "1"}
    )


def install_error_handlers(app: FastAPI) -> None:
    """Route every error through the envelope."""
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(StarletteHTTPException, _http_exception)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(DatabaseUnavailable, _unavailable)
