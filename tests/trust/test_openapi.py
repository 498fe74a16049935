"""The served OpenAPI document: every error in the envelope, bearer auth where it is needed."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from orchestrator.faults import NO_FAULTS, Faults, faults_for
from tests.support.settings import make_settings


async def test_every_operation_documents_its_errors_in_the_envelope(
    client: httpx.AsyncClient,
) -> None:
    spec = (await client.get("/openapi.json")).json()
    schemes = spec["components"]["securitySchemes"]
    assert schemes["bearerAuth"]["scheme"] == "bearer"
    assert schemes["cookieAuth"] == {
        "type": "apiKey",
        "in": "cookie",
        "name": "orch_session",
        "description": schemes["cookieAuth"]["description"],
    }
    assert "X-CSRF-Token" in schemes["cookieAuth"]["description"]
    assert "ErrorEnvelope" in spec["components"]["schemas"]
    assert "HTTPValidationError" not in spec["components"]["schemas"]
    operations = [
        (path, method, op) for path, item in spec["paths"].items() for method, op in item.items()
    ]
    assert operations
    for path, method, op in operations:
        errors = {code: r for code, r in op["responses"].items() if int(code) >= 400}
        assert {"405", "500"} <= set(errors), (path, method)
        for response in errors.values():
            schema = response["content"]["application/json"]["schema"]
            assert schema == {"$ref": "#/components/schemas/ErrorEnvelope"}
        if "requestBody" in op:
            assert {"413", "415", "422"} <= set(errors), (path, method)
        if path.startswith("/api/v1/") and not path.endswith(("login", "health", "healthz")):
            assert op["security"] == [{"bearerAuth": []}, {"cookieAuth": []}], (path, method)
            assert {"401", "403", "503"} <= set(errors), (path, method)
        if "428" in errors:
            headers = {p["name"] for p in op["parameters"] if p["in"] == "header"}
            assert "If-Match" in headers, (path, method)


async def test_405_allows_every_method_of_the_path(client: httpx.AsyncClient) -> None:
    response = await client.put("/api/v1/jobs")
    assert response.status_code == 405
    assert response.json()["error"]["code"] == 405
    assert response.headers["allow"] == "GET, HEAD, POST"


def test_fault_points_are_inert_outside_test_mode(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'x.db'}"
    development = make_settings(url, tmp_path, environment="development", fault_point="random")
    assert faults_for(development) is NO_FAULTS
    armed = faults_for(make_settings(url, tmp_path, fault_point="before_commit"))
    assert armed.enabled
    with pytest.raises(ValueError, match="unknown fault point"):
        Faults(point="nowhere")


async def test_the_credential_routes_are_described(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    paths = spec["paths"]
    login = paths["/auth/login"]["post"]["responses"]["200"]["content"]["application/json"]
    token_schema = spec["components"]["schemas"][login["schema"]["$ref"].rsplit("/", 1)[1]]
    assert {
        "access_token",
        "token_type",
        "expires_in",
        "refresh_token",
        "refresh_expires_in",
    } <= set(token_schema["properties"])
    assert "200" in paths["/auth/refresh"]["post"]["responses"]
    session = paths["/auth/session"]["post"]
    assert set(session["requestBody"]["content"]) == {
        "application/json",
        "application/x-www-form-urlencoded",
    }
    assert "204" in session["responses"]
    logout = paths["/auth/logout"]["post"]
    assert logout["security"] == [{"bearerAuth": []}, {"cookieAuth": []}]
    assert {"204", "401", "403"} <= set(logout["responses"])
    assert {"get"} <= set(paths["/api/v1/sessions"])
    assert {"delete"} <= set(paths["/api/v1/sessions/{session_id}"])
