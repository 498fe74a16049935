"""GET /metrics for Prometheus, and the fault route that exists only in the test environment."""

from __future__ import annotations

import hmac

import structlog
from fastapi import APIRouter, Request
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.responses import Response

from orchestrator.auth.deps import bearer_token
from orchestrator.db import DatabaseUnavailable
from orchestrator.errors import Forbidden, Unauthorized
from orchestrator.http.rate_limit import unlimited
from orchestrator.jobs.queries import count_jobs
from orchestrator.services import Services, services_of

log = structlog.get_logger(__name__)

router = APIRouter(tags=["monitoring"])
test_router = APIRouter(include_in_schema=False)


def _authorize(request: Request, services: Services) -> None:
    """With a scrape token configured everyone needs it; without one only loopback may scrape."""
    expected = services.settings.metrics_token
    if expected is not None and expected.get_secret_value():
        given = bearer_token(request.headers.get("authorization")) or ""
        if not hmac.compare_digest(given.encode(), expected.get_secret_value().encode()):
            raise Unauthorized("Metrics need the scrape token")
        return
    if not services.rate_limits.client_address.is_local(request.scope):
        raise Forbidden("Metrics are served to loopback clients only; set ORCH_METRICS_TOKEN")


async def _refresh_jobs(services: Services) -> None:
    try:
        counts = await count_jobs(services.db)
    except DatabaseUnavailable:
        return  # keep the last figures: a scrape must not fail because the database is down
    services.metrics.count_jobs(counts)


@router.get(
    "/metrics",
    summary="Prometheus metrics (loopback, or the scrape token)",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}},
)
@unlimited
async def metrics(request: Request) -> Response:
    services = services_of(request)
    _authorize(request, services)
    await _refresh_jobs(services)
    body = generate_latest(services.metrics.registry)
    return Response(body, media_type=CONTENT_TYPE_LATEST, headers={"Cache-Control": "no-store"})


@test_router.get("/__test__/fail")
async def fail() -> Response:
    """A forced 500, so that tests can see how unexpected errors are answered and logged."""
    raise RuntimeError("forced failure for tests")
