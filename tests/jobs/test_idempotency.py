"""Idempotency-Key on both creating POSTs."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from orchestrator.services import Services
from tests.factories import admin_headers, user_headers

TARGETS = [
    ("/api/v1/jobs", "/api/v1/jobs", "jobs"),
    ("/api/v1/collab/tasks", "/api/v1/collab/state/tasks", "items"),
]


@pytest.mark.parametrize(("post", "listing", "field"), TARGETS)
async def test_repeat_returns_the_original_response(
    client: httpx.AsyncClient, services: Services, post: str, listing: str, field: str
) -> None:
    headers = {**await admin_headers(client), "Idempotency-Key": "order-42"}
    first = await client.post(post, json={"title": "t"}, headers=headers)
    again = await client.post(post, json={"title": "t"}, headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.content == first.content
    assert again.headers["etag"] == first.headers["etag"]
    assert again.headers["location"] == first.headers["location"]
    listed = await client.get(listing, headers=headers)
    assert len(listed.json()[field]) == 1


@pytest.mark.parametrize(("post", "listing", "field"), TARGETS)
async def test_same_key_with_another_body_gets_422(
    client: httpx.AsyncClient, services: Services, post: str, listing: str, field: str
) -> None:
    headers = {**await admin_headers(client), "Idempotency-Key": "k1"}
    assert (await client.post(post, json={"title": "a"}, headers=headers)).status_code == 201
    response = await client.post(post, json={"title": "b"}, headers=headers)
    assert response.status_code == 422
    assert response.json()["error"]["type"] == "validation_error"
    assert len((await client.get(listing, headers=headers)).json()[field]) == 1


@pytest.mark.parametrize(("post", "listing", "field"), TARGETS)
async def test_concurrent_duplicates_create_exactly_one(
    client: httpx.AsyncClient, services: Services, post: str, listing: str, field: str
) -> None:
    headers = {**await admin_headers(client), "Idempotency-Key": "race"}
    responses = await asyncio.gather(
        *(client.post(post, json={"title": "t"}, headers=headers) for _ in range(20))
    )
    assert {r.status_code for r in responses} == {201}
    assert len({r.json()["id"] for r in responses}) == 1
    assert len({r.headers["etag"] for r in responses}) == 1
    assert len((await client.get(listing, headers=headers)).json()[field]) == 1


async def test_keys_are_per_user(client: httpx.AsyncClient, services: Services) -> None:
    alice = {**await user_headers(client, services, "alice"), "Idempotency-Key": "same"}
    bob = {**await user_headers(client, services, "bob"), "Idempotency-Key": "same"}
    a = await client.post("/api/v1/jobs", json={"title": "t"}, headers=alice)
    b = await client.post("/api/v1/jobs", json={"title": "t"}, headers=bob)
    assert a.status_code == b.status_code == 201
    assert a.json()["id"] != b.json()["id"]


@pytest.mark.parametrize("key", ["", "x" * 256, "with space"])
async def test_malformed_key_gets_422(
    client: httpx.AsyncClient, services: Services, key: str
) -> None:
    headers = {**await admin_headers(client), "Idempotency-Key": key}
    response = await client.post("/api/v1/jobs", json={"title": "t"}, headers=headers)
    assert response.status_code == 422
    assert (await client.get("/api/v1/jobs", headers=headers)).json() == {"jobs": []}
