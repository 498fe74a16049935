"""The OpenAPI document describes the credential routes with every status they answer."""

from __future__ import annotations

import httpx
import pytest

EXPECTED = {
    ("/api/v1/api-keys", "post"): {"201", "401", "403", "404", "422"},
    ("/api/v1/api-keys", "get"): {"200", "401", "403", "404", "422"},
    ("/api/v1/api-keys/{key_id}", "delete"): {"204", "401", "403", "404"},
    ("/api/v1/users", "post"): {"201", "401", "403", "409", "422"},
    ("/api/v1/users/{username}", "patch"): {"200", "401", "403", "404", "409", "422"},
    ("/api/v1/users/{username}/sessions", "delete"): {"204", "401", "403", "404"},
    ("/api/v1/users/me/password", "post"): {"204", "401", "403", "422"},
    ("/api/v1/sessions", "get"): {"200", "401", "403", "404", "422"},
    ("/auth/logout", "post"): {"204", "401", "403"},
}


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_credential_routes_document_their_statuses_and_both_schemes(
    client: httpx.AsyncClient,
) -> None:
    document = (await client.get("/openapi.json")).json()
    schemes = document["components"]["securitySchemes"]
    assert schemes["bearerAuth"]["scheme"] == "bearer"
    assert schemes["cookieAuth"] == {
        **schemes["cookieAuth"],
        "in": "cookie",
        "name": "orch_session",
    }
    for (path, method), statuses in EXPECTED.items():
        operation = document["paths"][path][method]
        assert statuses <= set(operation["responses"]), (path, method)
        assert operation["security"] == [{"bearerAuth": []}, {"cookieAuth": []}], path
    created = document["paths"]["/api/v1/api-keys"]["post"]["responses"]["201"]
    schema = created["content"]["application/json"]["schema"]
    assert schema == {"$ref": "#/components/schemas/NewApiKey"}
    new_key = document["components"]["schemas"]["NewApiKey"]
    assert set(new_key["properties"]) == {
        "id",
        "name",
        "username",
        "read_only",
        "created_at",
        "expires_at",
        "last_used_at",
        "prefix",
        "key",
    }
    body = document["components"]["schemas"]["ApiKeyCreate"]["properties"]
    assert body["expires_in_days"]["minimum"] == 1
    assert body["expires_in_days"]["maximum"] == 730
    assert body["expires_in_days"]["default"] == 90
