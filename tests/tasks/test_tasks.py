"""Collaboration tasks: the contract's endpoints, reads, and edits guarded by If-Match."""

from __future__ import annotations

import hashlib
import uuid

import httpx

from orchestrator.services import Services
from tests.support.users import account, admin_auth


def _etag(response: httpx.Response) -> str:
    return f'"{hashlib.sha256(response.content).hexdigest()}"'


async def _create(
    client: httpx.AsyncClient, headers: dict[str, str], title: str = "t"
) -> httpx.Response:
    response = await client.post("/api/v1/collab/tasks", json={"title": title}, headers=headers)
    assert response.status_code == 201, response.text
    return response


async def test_create_task_answers_201_with_etag_and_location(
    client: httpx.AsyncClient, services: Services
) -> None:
    headers = await account(services, "alice")
    response = await client.post(
        "/api/v1/collab/tasks",
        json={"title": " Review PR #123 ", "description": "Review frontend changes"},
        headers=headers,
    )
    assert response.status_code == 201
    body = response.json()
    assert body["title"] == "Review PR #123"
    assert body["description"] == "Review frontend changes"
    assert body["version"] == 1
    assert body["created_at"].endswith("+00:00")
    assert response.headers["location"] == f"/api/v1/collab/tasks/{body['id']}"
    assert response.headers["etag"] == _etag(response)
    # canonical JSON: sorted keys, compact
    assert response.content.startswith(b'{"created_at":')
    assert b": " not in response.content

    fetched = await client.get(response.headers["location"], headers=headers)
    assert fetched.status_code == 200
    assert fetched.content == response.content
    assert fetched.headers["etag"] == response.headers["etag"]


async def test_task_list_is_kind_tasks_with_every_item(
    client: httpx.AsyncClient, services: Services
) -> None:
    headers = admin_auth(services)
    empty = await client.get("/api/v1/collab/state/tasks", headers=headers)
    assert empty.json() == {"kind": "tasks", "items": []}
    ids = [(await _create(client, headers, f"t{n}")).json()["id"] for n in range(3)]
    response = await client.get("/api/v1/collab/state/tasks", headers=headers)
    body = response.json()
    assert set(body) == {"kind", "items"}
    assert [item["id"] for item in body["items"]] == ids
    assert response.headers["etag"] == _etag(response)
    assert response.headers["etag"] != empty.headers["etag"]
    assert response.headers["cache-control"] == "private, no-cache"
    assert "Authorization" in response.headers["vary"].replace(" ", "").split(",")


INVALID_TASKS: list[dict[str, object]] = [
    {},
    {"title": ""},
    {"title": " \t\n"},
    {"title": "x" * 201},
    {"title": ["x"]},
    {"title": "ok", "description": "d" * 10_001},
    {"title": "ok", "description": 3},
    {"title": "ok", "version": 5},
    {"title": "ok", "id": str(uuid.uuid4())},
]


async def test_invalid_task_gets_422(client: httpx.AsyncClient, services: Services) -> None:
    headers = admin_auth(services)
    for payload in INVALID_TASKS:
        response = await client.post("/api/v1/collab/tasks", json=payload, headers=headers)
        assert response.status_code == 422, (payload, response.text)
        assert response.json()["error"]["type"] == "validation_error"
    listed = await client.get("/api/v1/collab/state/tasks", headers=headers)
    assert listed.json()["items"] == []


async def test_limits_are_inclusive_and_unstorable_text_gets_422(
    client: httpx.AsyncClient, services: Services
) -> None:
    headers = admin_auth(services)
    response = await client.post(
        "/api/v1/collab/tasks",
        json={"title": "x" * 200, "description": "d" * 10_000},
        headers=headers,
    )
    assert response.status_code == 201
    location = response.headers["location"]
    raw_headers = {**headers, "Content-Type": "application/json", "If-Match": "*"}
    for raw in (
        b'{"title": "a\\u0000"}',
        b'{"title": "\\udc00x"}',
        b'{"title": "ok", "description": "\\u0000"}',
    ):
        created = await client.post("/api/v1/collab/tasks", content=raw, headers=raw_headers)
        assert created.status_code == 422, raw
        patched = await client.patch(location, content=raw, headers=raw_headers)
        assert patched.status_code == 422, raw
    for payload in ({}, {"title": None}, {"title": ""}, {"version": 3}):
        patched = await client.patch(location, json=payload, headers=raw_headers)
        assert patched.status_code == 422, payload
    assert (await client.get(location, headers=headers)).json()["version"] == 1
    listed = await client.get("/api/v1/collab/state/tasks", headers=headers)
    assert len(listed.json()["items"]) == 1


async def test_patch_with_current_etag_bumps_version_by_one(
    client: httpx.AsyncClient, services: Services
) -> None:
    headers = await account(services, "alice")
    created = await _create(client, headers)
    location = created.headers["location"]
    response = await client.patch(
        location,
        json={"title": " new ", "description": "more"},
        headers={**headers, "If-Match": created.headers["etag"]},
    )
    assert response.status_code == 200
    body = response.json()
    assert (body["title"], body["description"], body["version"]) == ("new", "more", 2)
    assert body["updated_at"] >= body["created_at"]
    assert response.headers["etag"] == _etag(response)
    assert response.headers["etag"] != created.headers["etag"]
    fetched = await client.get(location, headers=headers)
    assert fetched.content == response.content

    cleared = await client.patch(
        location, json={"description": None}, headers={**headers, "If-Match": "*"}
    )
    assert cleared.json()["description"] is None
    assert cleared.json()["title"] == "new"
    assert cleared.json()["version"] == 3


async def test_stale_if_match_gets_412_with_current_etag(
    client: httpx.AsyncClient, services: Services
) -> None:
    headers = admin_auth(services)
    created = await _create(client, headers)
    location, first = created.headers["location"], created.headers["etag"]
    second = (
        await client.patch(location, json={"title": "b"}, headers={**headers, "If-Match": first})
    ).headers["etag"]
    stale = await client.patch(
        location, json={"title": "c"}, headers={**headers, "If-Match": first}
    )
    assert stale.status_code == 412
    assert stale.headers["etag"] == second
    assert stale.json()["error"]["code"] == 412
    assert (await client.get(location, headers=headers)).json()["title"] == "b"


async def test_if_match_required_for_edits(client: httpx.AsyncClient, services: Services) -> None:
    headers = admin_auth(services)
    for method in ("PATCH", "DELETE"):
        await _check_if_match_required(client, headers, method)


async def _check_if_match_required(
    client: httpx.AsyncClient, headers: dict[str, str], method: str
) -> None:
    created = await _create(client, headers)
    location, etag = created.headers["location"], created.headers["etag"]
    payload = {"title": "x"} if method == "PATCH" else None
    missing = await client.request(method, location, headers=headers, json=payload)
    assert missing.status_code == 428
    weak = await client.request(
        method, location, headers={**headers, "If-Match": f"W/{etag}"}, json=payload
    )
    assert weak.status_code == 412
    listed = await client.request(
        method,
        location,
        headers={**headers, "If-Match": f'"other", {etag}'},
        json=payload,
    )
    assert listed.status_code == (200 if method == "PATCH" else 204)


async def test_if_match_star_and_delete(client: httpx.AsyncClient, services: Services) -> None:
    headers = admin_auth(services)
    location = (await _create(client, headers)).headers["location"]
    assert (
        await client.patch(location, json={"title": "x"}, headers={**headers, "If-Match": "*"})
    ).status_code == 200
    response = await client.delete(location, headers={**headers, "If-Match": "*"})
    assert response.status_code == 204
    assert (await client.get(location, headers=headers)).status_code == 404
    gone = await client.patch(location, json={"title": "y"}, headers={**headers, "If-Match": "*"})
    assert gone.status_code == 404
    assert (await client.get("/api/v1/collab/state/tasks", headers=headers)).json()["items"] == []


async def test_non_uuid_task_id_gets_404(client: httpx.AsyncClient, services: Services) -> None:
    headers = {**admin_auth(services), "If-Match": "*"}
    for method in ("GET", "PATCH", "DELETE"):
        payload = {"title": "x"} if method == "PATCH" else None
        for task_id in ("42", "not-a-uuid", "g" * 36):
            response = await client.request(
                method, f"/api/v1/collab/tasks/{task_id}", headers=headers, json=payload
            )
            assert response.status_code == 404
            assert response.json()["error"]["code"] == 404


async def test_viewer_reads_tasks_only(client: httpx.AsyncClient, services: Services) -> None:
    admin = admin_auth(services)
    viewer = await account(services, "vera", role="viewer")
    location = (await _create(client, admin)).headers["location"]
    assert (await client.get(location, headers=viewer)).status_code == 200
    assert (await client.get("/api/v1/collab/state/tasks", headers=viewer)).status_code == 200
    assert (
        await client.post("/api/v1/collab/tasks", json={"title": "t"}, headers=viewer)
    ).status_code == 403
    assert (
        await client.patch(location, json={"title": "t"}, headers={**viewer, "If-Match": "*"})
    ).status_code == 403
    assert (await client.delete(location, headers={**viewer, "If-Match": "*"})).status_code == 403
    assert (await client.get(location, headers=admin)).json()["version"] == 1


async def test_member_edits_others_tasks(client: httpx.AsyncClient, services: Services) -> None:
    alice = await account(services, "alice")
    bob = await account(services, "bob")
    location = (await _create(client, alice)).headers["location"]
    response = await client.patch(location, json={"title": "b"}, headers={**bob, "If-Match": "*"})
    assert response.status_code == 200
