"""Idempotency-Key on both creating POSTs."""

from __future__ import annotations

import asyncio

import httpx

from orchestrator.services import Services
from tests.support.users import account, admin_auth

TARGETS = [
    ("/api/v1/jobs", "/api/v1/jobs", "jobs"),
    ("/api/v1/collab/tasks", "/api/v1/collab/state/tasks", "items"),
]


async def test_repeat_returns_the_original_response(
    client: httpx.AsyncClient, services: Services
) -> None:
    admin = admin_auth(services)
    for post, listing, field in TARGETS:
        await _repeat_returns_the_original_response(client, admin, post, listing, field)


async def _repeat_returns_the_original_response(
    client: httpx.AsyncClient, admin: dict[str, str], post: str, listing: str, field: str
) -> None:
    headers = {**admin, "Idempotency-Key": f"order-42{post}"}
    first = await client.post(post, json={"title": "t"}, headers=headers)
    again = await client.post(post, json={"title": "t"}, headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.content == first.content
    assert again.headers["etag"] == first.headers["etag"]
    assert again.headers["location"] == first.headers["location"]
    listed = await client.get(listing, headers=headers)
    assert len(listed.json()[field]) == 1


async def test_same_key_with_another_body_gets_422(
    client: httpx.AsyncClient, services: Services
) -> None:
    admin = admin_auth(services)
    for post, listing, field in TARGETS:
        await _same_key_with_another_body_gets_422(client, admin, post, listing, field)


async def _same_key_with_another_body_gets_422(
    client: httpx.AsyncClient, admin: dict[str, str], post: str, listing: str, field: str
) -> None:
    headers = {**admin, "Idempotency-Key": f"k1{post}"}
    assert (await client.post(post, json={"title": "a"}, headers=headers)).status_code == 201
    response = await client.post(post, json={"title": "b"}, headers=headers)
    assert response.status_code == 422
    assert response.json()["error"]["type"] == "validation_error"
    assert len((await client.get(listing, headers=headers)).json()[field]) == 1


async def test_concurrent_duplicates_create_exactly_one(
    client: httpx.AsyncClient, services: Services
) -> None:
    admin = admin_auth(services)
    for post, listing, field in TARGETS:
        await _concurrent_duplicates_create_exactly_one(client, admin, post, listing, field)


async def _concurrent_duplicates_create_exactly_one(
    client: httpx.AsyncClient, admin: dict[str, str], post: str, listing: str, field: str
) -> None:
    headers = {**admin, "Idempotency-Key": f"race{post}"}
    responses = await asyncio.gather(
        *(client.post(post, json={"title": "t"}, headers=headers) for _ in range(20))
    )
    assert {r.status_code for r in responses} == {201}
    assert len({r.json()["id"] for r in responses}) == 1
    assert len({r.headers["etag"] for r in responses}) == 1
    assert len((await client.get(listing, headers=headers)).json()[field]) == 1


async def test_keys_are_per_user(client: httpx.AsyncClient, services: Services) -> None:
    alice = {**await account(services, "alice"), "Idempotency-Key": "same"}
    bob = {**await account(services, "bob"), "Idempotency-Key": "same"}
    a = await client.post("/api/v1/jobs", json={"title": "t"}, headers=alice)
    b = await client.post("/api/v1/jobs", json={"title": "t"}, headers=bob)
    assert a.status_code == b.status_code == 201
    assert a.json()["id"] != b.json()["id"]


async def test_malformed_key_gets_422(client: httpx.AsyncClient, services: Services) -> None:
    admin = admin_auth(services)
    for key in ("", "x" * 256, "with space"):
        headers = {**admin, "Idempotency-Key": key}
        response = await client.post("/api/v1/jobs", json={"title": "t"}, headers=headers)
        assert response.status_code == 422
    assert (await client.get("/api/v1/jobs", headers=headers)).json() == {"jobs": []}
