from __future__ import annotations

import httpx
import pytest


@pytest.mark.parametrize("prefix", ["", "/api/v1"])
async def test_health_is_healthy_without_database(client: httpx.AsyncClient, prefix: str) -> None:
    response = await client.get(f"{prefix}/health")
    assert response.status_code == 200
    assert response.json() == {"status": "healthy"}


@pytest.mark.parametrize("prefix", ["", "/api/v1"])
async def test_healthz_does_a_database_round_trip(client: httpx.AsyncClient, prefix: str) -> None:
    response = await client.get(f"{prefix}/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_head_works_on_get_routes(client: httpx.AsyncClient) -> None:
    response = await client.head("/health")
    assert response.status_code == 200
    assert response.content == b""


async def test_unknown_route_gets_404_envelope(client: httpx.AsyncClient) -> None:
    response = await client.get("/no/such/thing", headers={"X-Request-ID": "abc-123"})
    assert response.status_code == 404
    error = response.json()["error"]
    assert error["type"] == "http_exception"
    assert error["code"] == 404
    assert error["path"] == "/no/such/thing"
    assert error["method"] == "GET"
    assert error["request_id"] == "abc-123" == response.headers["x-request-id"]


async def test_wrong_method_gets_405_with_allow(client: httpx.AsyncClient) -> None:
    response = await client.post("/health")
    assert response.status_code == 405
    assert set(response.headers["allow"].replace(" ", "").split(",")) == {"GET", "HEAD"}
    assert response.json()["error"]["code"] == 405
