"""The OpenAPI document, completed centrally: every error an operation can answer, in the
envelope, and the bearer scheme on every protected operation.

Route modules declare only their success responses; what the shared plumbing can answer
(authentication, body limits, content types, rate limits, an unavailable database) is the
same everywhere, so it is added here from what each route declares.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Collection, Iterator
from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute, iter_route_contexts

ENVELOPE_REF = {"$ref": "#/components/schemas/ErrorEnvelope"}
SECURITY_SCHEME = "bearerAuth"
COOKIE_SCHEME = "cookieAuth"
# Either one: a bearer credential, or (from a browser) the session cookie.
SECURITY: list[dict[str, list[str]]] = [{SECURITY_SCHEME: []}, {COOKIE_SCHEME: []}]
SECURITY_SCHEMES: dict[str, Any] = {
    SECURITY_SCHEME: {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT access token, or API key (orch_…)",
        "description": "An access token from POST /auth/login or /auth/refresh, or an API "
        "key from POST /api/v1/api-keys. No CSRF token is needed.",
    },
    COOKIE_SCHEME: {
        "type": "apiKey",
        "in": "cookie",
        "name": "orch_session",
        "description": "The browser session from POST /auth/session (HttpOnly). Requests "
        "with a method other than GET, HEAD and OPTIONS must also send the orch_csrf "
        "cookie's value in the X-CSRF-Token header (else 403).",
    },
}
_WRITES = frozenset({"post", "put", "patch", "delete"})
_PUBLIC_SUFFIXES = ("/auth/login", "/health", "/healthz")

ERROR_ENVELOPE: dict[str, Any] = {
    "title": "ErrorEnvelope",
    "type": "object",
    "required": ["error"],
    "additionalProperties": False,
    "properties": {
        "error": {
            "type": "object",
            "required": ["type", "code", "message", "path", "method", "request_id"],
            "additionalProperties": False,
            "properties": {
                "type": {
                    "type": "string",
                    "enum": ["http_exception", "internal_server_error", "validation_error"],
                },
                "code": {"type": "integer", "minimum": 400, "maximum": 599},
                "message": {"type": "string"},
                "path": {"type": "string"},
                "method": {"type": "string"},
                "request_id": {"type": ["string", "null"]},
                "details": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["field", "reason"],
                        "properties": {
                            "field": {"type": "string"},
                            "reason": {"type": "string"},
                        },
                    },
                },
            },
        }
    },
}

DESCRIPTIONS = {
    400: "The request body is not valid JSON",
    401: "Missing, invalid, expired or revoked bearer token",
    403: "The user's role may not do this",
    404: "No such resource",
    405: "Method not allowed",
    409: "Conflicts with the current state (duplicate, wrong state, idempotency key reuse)",
    412: "If-Match does not match the current ETag",
    413: "Request body larger than the limit",
    415: "Request body is not JSON",
    422: "The request is not valid (JSON nested deeper than 64 levels included)",
    428: "This write must be conditional: send If-Match",
    429: "Rate limit exceeded; see Retry-After",
    500: "Internal server error",
    503: "The database is unavailable; see Retry-After",
}


def _dependencies(dependant: Dependant) -> Iterator[Dependant]:
    for dep in dependant.dependencies:
        yield dep
        yield from _dependencies(dep)


def is_protected(
    path: str, dependant: Dependant, authenticating: Collection[Callable[..., Any]]
) -> bool:
    """Whether the route needs a bearer token: it depends on one of the `authenticating`
    dependencies, or it is an API route that is not one of the public ones."""
    if any(dep.call in authenticating for dep in _dependencies(dependant)):
        return True
    return path.startswith("/api/") and not path.endswith(_PUBLIC_SUFFIXES)


def _error_statuses(
    path: str, method: str, operation: dict[str, Any], *, protected: bool
) -> list[int]:
    params = operation.get("parameters", [])
    header_names = {p["name"].lower() for p in params if p.get("in") == "header"}
    statuses = [405, 500]
    if path.endswith(("/health", "/healthz")):
        return statuses
    statuses += [429, 503]
    if protected:
        statuses += [401, 403]
    if any(p.get("in") == "path" for p in params):
        statuses.append(404)
    if params or "requestBody" in operation:
        statuses.append(422)
    if "requestBody" in operation:
        # 400: the body is not parseable JSON at all.
        statuses += [400, 413, 415]
    if method in _WRITES and protected:
        statuses.append(409)
    if "if-match" in header_names:
        statuses += [412, 428]
    return sorted(set(statuses))


IF_MATCH = {
    "name": "If-Match",
    "in": "header",
    "required": True,
    "description": "The ETag from a read of this resource (strong comparison); `*` matches any",
    "schema": {"type": "string"},
}


def _declare_if_match(operation: dict[str, Any]) -> None:
    """Guarded writes (those that can answer 428) read If-Match from the headers directly;
    declare it so clients and fuzzers know it is required."""
    if "428" not in operation.get("responses", {}):
        return
    params = operation.setdefault("parameters", [])
    if not any(p.get("in") == "header" and p["name"].lower() == "if-match" for p in params):
        params.append(IF_MATCH)


def complete_schema(
    app: FastAPI, *, authenticating: Collection[Callable[..., Any]]
) -> dict[str, Any]:
    """FastAPI's document plus the envelope, the security scheme and every error status."""
    with warnings.catch_warnings():
        # GET+HEAD routes share an operation id; made unique below.
        warnings.simplefilter("ignore", UserWarning)
        schema = get_openapi(
            title=app.title,
            version=app.version,
            description=app.description,
            routes=app.routes,
        )
    components = schema.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    schemas["ErrorEnvelope"] = ERROR_ENVELOPE
    components.setdefault("securitySchemes", {}).update(SECURITY_SCHEMES)
    protected = {
        context.path_format: is_protected(context.path_format, context.dependant, authenticating)
        for context in iter_route_contexts(app.routes)
        if isinstance(context.original_route, APIRoute) and context.path_format
    }
    seen_ids: set[str] = set()
    for path, item in schema.get("paths", {}).items():
        if path not in protected:
            continue
        for method, operation in item.items():
            if method not in {"get", "head", "post", "put", "patch", "delete", "options"}:
                continue
            if operation.get("operationId") in seen_ids:
                operation["operationId"] = f"{operation['operationId']}_{method}"
            seen_ids.add(operation.get("operationId", ""))
            responses = operation.setdefault("responses", {})
            _declare_if_match(operation)
            for status in _error_statuses(path, method, operation, protected=protected[path]):
                existing = responses.get(str(status), {})
                responses[str(status)] = {
                    "description": existing.get("description") or DESCRIPTIONS[status],
                    **({"headers": existing["headers"]} if "headers" in existing else {}),
                    "content": {"application/json": {"schema": ENVELOPE_REF}},
                }
            for code, response in responses.items():
                # Whatever a route declared itself, its errors are envelopes too.
                if code[0] in "45" and "content" not in response:
                    response["content"] = {"application/json": {"schema": ENVELOPE_REF}}
            if protected[path]:
                operation["security"] = SECURITY
    # Validation errors are answered in the envelope, never in FastAPI's default shape.
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    return schema


def install_openapi(app: FastAPI, *, authenticating: Collection[Callable[..., Any]]) -> None:
    """Serve the completed document at /openapi.json (built once, on first request).

    A route is protected when it depends on one of the `authenticating` dependencies.
    """

    built_for = -1

    def openapi() -> dict[str, Any]:
        nonlocal built_for
        # Rebuilt if routes are added after the first call (tests that mount extra routes).
        if app.openapi_schema is None or built_for != len(app.routes):
            app.openapi_schema = complete_schema(app, authenticating=authenticating)
            built_for = len(app.routes)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
