"""Nested JSON is bounded where it comes in, and whatever is stored can always be read."""

from __future__ import annotations

from typing import Any

import httpx
import orjson

from orchestrator.services import Services
from tests.support.users import account, admin_auth

LIMIT = 64  # the documented bound on nesting
JSON = {"Content-Type": "application/json"}


def nested(levels: int) -> Any:
    """Objects and arrays, alternating, `levels` deep."""
    value: Any = "bottom"
    for level in range(levels):
        value = {"down": value} if level % 2 else [value]
    return value


def assert_too_deep(response: httpx.Response) -> None:
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == 422
    assert error["details"][0]["field"] == "body"
    assert str(LIMIT) in error["details"][0]["reason"]


async def test_bodies_nested_deeper_than_the_limit_are_refused_at_the_door(
    client: httpx.AsyncClient, services: Services
) -> None:
    headers = await account(services, "alice")
    fits = {"title": "fits", "payload": {"deep": nested(LIMIT - 2)}}
    created = await client.post("/api/v1/jobs", json=fits, headers=headers)
    assert created.status_code == 201, created.text
    too_deep = {"title": "too deep", "payload": {"deep": nested(LIMIT - 1)}}
    assert_too_deep(await client.post("/api/v1/jobs", json=too_deep, headers=headers))
    # on every route, whatever field it is in (orjson's own bound is 1024)
    job = created.json()["id"]
    admin = admin_auth(services)
    for depth in (LIMIT + 1, 300, 1000):
        deep = "[" * depth + "]" * depth  # written by hand: encoders stop well before 1000
        complete = f'{{"token": 1, "result": {deep}}}'
        response = await client.post(
            f"/api/v1/jobs/{job}/complete", content=complete, headers={**admin, **JSON}
        )
        assert_too_deep(response)
        task = f'{{"title": "task", "description": {deep}}}'
        response = await client.post(
            "/api/v1/collab/tasks", content=task, headers={**headers, **JSON}
        )
        assert_too_deep(response)
    listed = await client.get("/api/v1/jobs", headers=headers)
    assert [item["name"] for item in listed.json()["jobs"]] == ["fits"]


async def test_a_result_stored_deep_is_still_served(
    client: httpx.AsyncClient, services: Services
) -> None:
    """What an older version let in (a result 252 levels deep) must not break the list."""
    headers = await account(services, "bob")
    created = await client.post("/api/v1/jobs", json={"title": "old"}, headers=headers)
    job = created.json()["id"]
    deep = nested(252)
    async with services.db.transaction() as tx:
        await tx.execute(
            "UPDATE jobs SET result = :result, payload = :result WHERE id = :id",
            {"result": orjson.dumps(deep).decode(), "id": job},
        )
    listed = await client.get("/api/v1/jobs", headers=headers)
    assert listed.status_code == 200, listed.text
    [item] = listed.json()["jobs"]
    assert item["result"] == deep
    one = await client.get(f"/api/v1/jobs/{job}", headers=headers)
    assert one.status_code == 200, one.text
    assert one.json()["payload"] == deep
    assert item["id"] == job
