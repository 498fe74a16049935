"""Liveness (`/health`, no database) and readiness (`/healthz`, a real round trip)."""

from __future__ import annotations

import asyncio

import structlog
from fastapi import APIRouter, Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from orchestrator.http.errors import error_response
from orchestrator.http.rate_limit import unlimited
from orchestrator.services import services_of

log = structlog.get_logger(__name__)
router = APIRouter(tags=["health"])

_HEALTHY = b'{"status":"healthy"}'
_OK = b'{"status":"ok"}'


@unlimited
async def health() -> Response:
    return Response(_HEALTHY, media_type="application/json", headers={"Cache-Control": "no-store"})


_FAST_ROUTES: dict[str, BaseRoute] = {}


@unlimited
async def _fast_health(request: Request) -> Response:
    # Plain Starlette routes do not record themselves; access lines and metrics read it.
    request.scope["route"] = _FAST_ROUTES[request.scope["path"]]
    return await health()


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
    # Served by a plain Starlette route, matched first: liveness is what load balancers poll
    # most, and it needs nothing of FastAPI's per-request machinery (dependency solving,
    # query parsing, exit stacks), which costs more than the whole rest of the request.
    # The API route below is never reached; it keeps `/health` in the OpenAPI document.
    router.add_route(
        f"{_prefix}/health", _fast_health, methods=["GET", "HEAD"], include_in_schema=False
    )
    _FAST_ROUTES[f"{_prefix}/health"] = router.routes[-1]
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
