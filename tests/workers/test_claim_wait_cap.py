"""Claim requests: the wait cap (ORCH_CLAIM_MAX_WAIT_SECONDS) and number validation."""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from orchestrator.app import create_app
from tests.support.settings import make_settings
from tests.support.users import user_headers


async def test_a_long_wait_is_shortened_to_the_configured_cap(
    database_url: str, tmp_path: Path
) -> None:
    app = create_app(make_settings(database_url, tmp_path / "data", claim_max_wait_seconds=0.2))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client,
    ):
        headers = await user_headers(client, app.state.services, "w", role="worker")
        started = time.monotonic()
        response = await client.post(
            "/api/v1/jobs/claim", json={"queues": ["empty"], "wait": 30}, headers=headers
        )
        assert response.status_code == 204
        assert time.monotonic() - started < 15  # the 30 s asked for were cut to the cap


async def test_a_boolean_is_not_a_number(database_url: str, tmp_path: Path) -> None:
    app = create_app(make_settings(database_url, tmp_path / "data"))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client,
    ):
        headers = await user_headers(client, app.state.services, "w", role="worker")
        for body in ({"lease_seconds": True}, {"wait": False}):
            response = await client.post("/api/v1/jobs/claim", json=body, headers=headers)
            assert response.status_code == 422, body
            assert response.json()["error"]["type"] == "validation_error"
