"""Liveness (`/health`, no database) and readiness (`/healthz`, a real round trip)."""

from __future__ import annotations

import asyncio

import structlog
from fastapi import APIRouter, Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from orchestrator.http.errors import error_response
from orchestrator.http.rate_limit import unlimited
from orchestrator.services import services_of

log = structlog.get_logger(__name__)
router = APIRouter(tags=["health"])

_HEALTHY = b'{"status":"healthy"}'
_OK = b'{"status":"ok"}'


def _healthy() -> Response:
    return Response(_HEALTHY, media_type="application/json", headers={"Cache-Control": "no-store"})


@unlimited
async def health() -> Response:
    return _healthy()


# What `health()` answers, rendered once.
_HEALTHY_HEADERS = tuple(_healthy().raw_headers)


class _Liveness:
    """`GET /health` as a bare ASGI app: liveness is what load balancers poll most, and it
    needs nothing of the framework's per-request machinery (a request object, exception
    wrappers, a response object), which cost more than the rest of the request."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [*_HEALTHY_HEADERS]})
        await send({"type": "http.response.body", "body": _HEALTHY})


@unlimited
async def healthz(request: Request) -> Response:
    services = services_of(request)
    try:
        # Bounded here too: a SQLite read can wait on a lock far longer than a probe should.
        await asyncio.wait_for(services.db.ping(), services.settings.db_timeout_seconds * 2)
    except Exception as exc:
        log.warning("healthz_database_unavailable", error=type(exc).__name__)
        return error_response(request.scope, 500, "Database unavailable")
    return Response(_OK, media_type="application/json", headers={"Cache-Control": "no-store"})


for _prefix in ("", "/api/v1"):
    # Served by a plain Starlette route around `_Liveness`, matched first. The API route
    # below is never reached; it keeps `/health` in the OpenAPI document.
    router.routes.append(
        Route(
            f"{_prefix}/health",
            unlimited(_Liveness()),
            methods=["GET", "HEAD"],
            include_in_schema=False,
        )
    )
    router.add_api_route(
        f"{_prefix}/health",
        health,
        methods=["GET"],
        summary="Liveness; touches no database",
    )
    router.add_api_route(
        f"{_prefix}/healthz",
        healthz,
        methods=["GET"],
        summary="Readiness: a database round trip",
        responses={500: {"description": "Database unavailable"}},
    )
