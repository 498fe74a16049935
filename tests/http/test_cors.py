from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from orchestrator.config import Settings
from tests.support.apps import client_for, running_app

ALLOWED = "https://console.example"
PREFLIGHT = {
    "Access-Control-Request-Method": "POST",
    "Access-Control-Request-Headers": "authorization, content-type",
}


async def test_allowed_origin_is_echoed_and_others_are_not(tmp_path: Path) -> None:
    overrides = {
        "cors_origins": f"{ALLOWED}, https://other.example",
        "cors_allow_credentials": True,
    }
    async with running_app(tmp_path, **overrides) as app, client_for(app) as client:
        response = await client.get("/health", headers={"Origin": ALLOWED})
        assert response.headers["access-control-allow-origin"] == ALLOWED
        assert response.headers["access-control-allow-credentials"] == "true"
        assert "Origin" in response.headers["vary"]
        assert "X-Request-ID" in response.headers["access-control-expose-headers"]

        for origin in ("https://evil.example", f"{ALLOWED}.evil.example", "null", ALLOWED + "/"):
            response = await client.get("/health", headers={"Origin": origin})
            assert response.status_code == 200
            assert "access-control-allow-origin" not in response.headers


async def test_preflight_from_allowed_origin(tmp_path: Path) -> None:
    async with running_app(tmp_path, cors_origins=ALLOWED) as app, client_for(app) as client:
        response = await client.options("/api/v1/jobs", headers={"Origin": ALLOWED, **PREFLIGHT})
        assert response.status_code == 200
        assert response.headers["access-control-allow-origin"] == ALLOWED
        assert "POST" in response.headers["access-control-allow-methods"]
        assert "authorization" in response.headers["access-control-allow-headers"].lower()
        assert response.headers["x-content-type-options"] == "nosniff"


async def test_preflight_from_other_origin_is_refused_in_the_envelope(tmp_path: Path) -> None:
    async with running_app(tmp_path, cors_origins=ALLOWED) as app, client_for(app) as client:
        response = await client.options(
            "/api/v1/jobs", headers={"Origin": "https://evil.example", **PREFLIGHT}
        )
        assert response.status_code == 400
        assert "access-control-allow-origin" not in response.headers
        error = response.json()["error"]
        assert error["code"] == 400
        assert error["method"] == "OPTIONS"
        assert error["request_id"] == response.headers["x-request-id"]


async def test_no_configured_origins_allows_none(tmp_path: Path) -> None:
    async with running_app(tmp_path) as app, client_for(app) as client:
        response = await client.get("/health", headers={"Origin": ALLOWED})
        assert "access-control-allow-origin" not in response.headers
        response = await client.options("/health", headers={"Origin": ALLOWED, **PREFLIGHT})
        assert "access-control-allow-origin" not in response.headers


PRODUCTION = {"environment": "production", "secret_key": "k" * 20 + "-unguessable-production-key"}


def test_production_refuses_wildcard_origin_with_credentials() -> None:
    with pytest.raises(ValidationError, match="wildcard CORS origin"):
        Settings(**PRODUCTION, cors_origins="*", cors_allow_credentials=True)  # type: ignore[arg-type]
    # either one alone is fine
    assert Settings(**PRODUCTION, cors_origins="*").cors_origins == ["*"]  # type: ignore[arg-type]
    assert Settings(**PRODUCTION, cors_origins=ALLOWED, cors_allow_credentials=True)  # type: ignore[arg-type]


async def test_without_origins_responses_do_not_vary_by_origin(tmp_path: Path) -> None:
    async with running_app(tmp_path) as app, client_for(app) as client:
        response = await client.get("/health", headers={"Origin": ALLOWED})
        assert "origin" not in response.headers.get("vary", "").lower()
