from __future__ import annotations

import httpx
import pytest

from orchestrator.services import Services
from tests.factories import ADMIN_PASSWORD, PASSWORD, make_user


@pytest.mark.parametrize("path", ["/auth/login", "/api/v1/auth/login"])
async def test_login_returns_bearer_token(client: httpx.AsyncClient, path: str) -> None:
    response = await client.post(path, json={"username": "admin", "password": ADMIN_PASSWORD})
    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "bearer"
    assert body["access_token"]
    assert response.headers["cache-control"] == "no-store"


async def test_token_opens_protected_route(client: httpx.AsyncClient, services: Services) -> None:
    await make_user(services, "alice")
    response = await client.post("/auth/login", json={"username": "ALICE", "password": PASSWORD})
    assert response.status_code == 200


@pytest.mark.parametrize(
    "credentials",
    [
        {"username": "admin", "password": "wrong-password"},
        {"username": "nobody", "password": "whatever-password"},
    ],
)
async def test_bad_credentials_get_401(
    client: httpx.AsyncClient, credentials: dict[str, str]
) -> None:
    response = await client.post("/auth/login", json=credentials)
    assert response.status_code == 401
    assert response.json()["error"]["message"] == "Invalid username or password"
    assert credentials["password"] not in response.text


@pytest.mark.parametrize(
    "body",
    [
        {"username": "admin"},
        {"username": "admin", "password": "x", "extra": 1},
        {"username": 5, "password": "x"},
        {"username": "a" * 151, "password": "x"},
        {"username": "admin", "password": "p" * 1025},
    ],
)
async def test_malformed_login_gets_422_without_echo(
    client: httpx.AsyncClient, body: dict[str, object]
) -> None:
    response = await client.post("/auth/login", json=body)
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["type"] == "validation_error"
    assert all(set(d) == {"field", "reason"} for d in error["details"])
    assert "p" * 100 not in response.text
    assert "a" * 100 not in response.text


async def test_non_json_login_gets_422(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/auth/login", content=b"username=admin", headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 422
