"""The contract's job endpoints, and deletion."""

from __future__ import annotations

import hashlib
import itertools
import re
import uuid

import httpx

from orchestrator.services import Services
from tests.support.users import account, admin_auth


def _etag(response: httpx.Response) -> str:
    return f'"{hashlib.sha256(response.content).hexdigest()}"'


async def test_create_job_answers_201_with_etag_and_location(
    client: httpx.AsyncClient, services: Services
) -> None:
    headers = await account(services, "alice")
    response = await client.post(
        "/api/v1/jobs",
        json={"title": "  Process payroll ", "description": "Monthly"},
        headers=headers,
    )
    assert response.status_code == 201
    body = response.json()
    assert body["name"] == "Process payroll"
    assert body["status"] == "pending"
    assert body["description"] == "Monthly"
    assert body["created_by"] == "alice"
    assert body["version"] == 1
    assert body["queue"] == "default"
    assert body["max_attempts"] == 3
    assert body["priority"] == 0
    assert body["payload"] is None
    assert uuid.UUID(body["id"])
    assert response.headers["location"] == f"/api/v1/jobs/{body['id']}"
    assert response.headers["etag"] == _etag(response)
    assert response.headers["cache-control"] == "private, no-cache"
    assert "Authorization" in response.headers["vary"].replace(" ", "").split(",")

    fetched = await client.get(response.headers["location"], headers=headers)
    assert fetched.status_code == 200
    assert fetched.content == response.content
    assert fetched.headers["etag"] == response.headers["etag"]


async def test_job_list_shows_every_job_in_creation_order(
    client: httpx.AsyncClient, services: Services
) -> None:
    headers = admin_auth(services)
    ids = []
    for n in range(3):
        created = await client.post("/api/v1/jobs", json={"title": f"job {n}"}, headers=headers)
        ids.append(created.json()["id"])
    response = await client.get("/api/v1/jobs", headers=headers)
    assert response.status_code == 200
    body = response.json()
    assert list(body) == ["jobs"]
    assert [job["id"] for job in body["jobs"]] == ids
    assert {"id", "name", "status"} <= set(body["jobs"][0])
    assert response.headers["etag"] == _etag(response)


async def test_worker_fields_are_accepted_and_shown(
    client: httpx.AsyncClient, services: Services
) -> None:
    headers = admin_auth(services)
    response = await client.post(
        "/api/v1/jobs",
        json={
            "title": "render",
            "queue": "gpu",
            "payload": {"frames": [1, 2], "name": "x"},
            "priority": 7,
            "max_attempts": 5,
        },
        headers=headers,
    )
    assert response.status_code == 201
    body = response.json()
    assert (body["queue"], body["payload"], body["priority"], body["max_attempts"]) == (
        "gpu",
        {"frames": [1, 2], "name": "x"},
        7,
        5,
    )
    for field in ("attempts", "result", "error", "started_at", "finished_at", "cancel_requested"):
        assert field in body


INVALID_JOBS: list[dict[str, object]] = [
    {},
    {"title": ""},
    {"title": "   "},
    {"title": "x" * 201},
    {"title": 5},
    {"title": None},
    {"title": "ok", "description": "d" * 10_001},
    {"title": "ok", "unknown": 1},
    {"title": "ok", "queue": ""},
    {"title": "ok", "queue": "q" * 101},
    {"title": "ok", "payload": [1, 2]},
    {"title": "ok", "payload": "text"},
    {"title": "ok", "payload": {"big": "x" * (64 * 1024)}},
    {"title": "ok", "payload": {"n": 2**70}},
    {"title": "ok", "priority": 1.5},
    {"title": "ok", "priority": "1"},
    {"title": "ok", "priority": 2**40},
    {"title": "ok", "max_attempts": 0},
    {"title": "ok", "max_attempts": 101},
    {"title": "ok", "max_attempts": True},
]


async def test_invalid_job_gets_422_and_creates_nothing(
    client: httpx.AsyncClient, services: Services
) -> None:
    headers = admin_auth(services)
    for payload in INVALID_JOBS:
        response = await client.post("/api/v1/jobs", json=payload, headers=headers)
        assert response.status_code == 422, (payload, response.text)
        assert response.json()["error"]["type"] == "validation_error"
    assert (await client.get("/api/v1/jobs", headers=headers)).json() == {"jobs": []}


UNSTORABLE: list[bytes] = [
    b'{"title": "a\\u0000b"}',
    b'{"title": "a\\ud800b"}',
    b'{"title": "ok", "description": "\\udfff"}',
    b'{"title": "ok", "queue": "q\\u0000"}',
    b'{"title": "ok", "payload": {"k": "\\ud83d"}}',
    b'{"title": "ok", "payload": {"k\\u0000": 1}}',
    b'{"title": "ok", "payload": {"n": NaN}}',
    b'{"title": "ok", "payload": {"n": 1e400}}',
]


async def test_nul_and_lone_surrogates_get_422(
    client: httpx.AsyncClient, services: Services
) -> None:
    headers = {**admin_auth(services), "Content-Type": "application/json"}
    for raw in UNSTORABLE:
        response = await client.post("/api/v1/jobs", content=raw, headers=headers)
        assert response.status_code == 422, (raw, response.text)
        assert response.json()["error"]["type"] == "validation_error"
    assert (await client.get("/api/v1/jobs", headers=headers)).json() == {"jobs": []}


async def test_unicode_title_is_kept(client: httpx.AsyncClient, services: Services) -> None:
    headers = admin_auth(services)
    title = "Déjà vu 🎉 " + "界" * 180
    response = await client.post("/api/v1/jobs", json={"title": title}, headers=headers)
    assert response.status_code == 201
    fetched = await client.get(response.headers["location"], headers=headers)
    assert fetched.json()["name"] == title.strip()


async def test_non_uuid_job_id_gets_404_in_the_envelope(
    client: httpx.AsyncClient, services: Services
) -> None:
    headers = admin_auth(services)
    for job_id, method in itertools.product(
        ["not-a-uuid", "123", "00000000-0000-0000-0000-00000000000g"], ["GET", "DELETE"]
    ):
        response = await client.request(method, f"/api/v1/jobs/{job_id}", headers=headers)
        assert response.status_code == 404
        assert response.json()["error"]["code"] == 404

    response = await client.get(f"/api/v1/jobs/{uuid.uuid4()}", headers=headers)
    assert response.status_code == 404
    assert response.json()["error"]["path"] == response.request.url.path


async def test_no_redirect_for_trailing_slash(
    client: httpx.AsyncClient, services: Services
) -> None:
    headers = admin_auth(services)
    for path in ("/api/v1/jobs/", "/api/v1/collab/state/tasks/", "/api/v1/collab/tasks/"):
        response = await client.get(path, headers=headers)
        assert response.status_code in (404, 405)
        assert "location" not in response.headers
        assert response.json()["error"]["code"] == response.status_code


async def test_creator_deletes_job_then_it_is_gone(
    client: httpx.AsyncClient, services: Services
) -> None:
    headers = await account(services, "alice")
    created = await client.post("/api/v1/jobs", json={"title": "t"}, headers=headers)
    location = created.headers["location"]
    response = await client.delete(location, headers=headers)
    assert response.status_code == 204
    assert response.content == b""
    assert (await client.get(location, headers=headers)).status_code == 404
    assert (await client.delete(location, headers=headers)).status_code == 404
    assert (await client.get("/api/v1/jobs", headers=headers)).json() == {"jobs": []}


async def test_only_creator_or_admin_deletes_a_job(
    client: httpx.AsyncClient, services: Services
) -> None:
    alice = await account(services, "alice")
    bob = await account(services, "bob")
    viewer = await account(services, "vera", role="viewer")
    admin = admin_auth(services)
    location = (await client.post("/api/v1/jobs", json={"title": "t"}, headers=alice)).headers[
        "location"
    ]
    assert (await client.delete(location, headers=bob)).status_code == 403
    assert (await client.delete(location, headers=viewer)).status_code == 403
    assert (await client.get(location, headers=alice)).status_code == 200
    assert (await client.delete(location, headers=admin)).status_code == 204


async def test_job_delete_honours_if_match(client: httpx.AsyncClient, services: Services) -> None:
    headers = admin_auth(services)
    created = await client.post("/api/v1/jobs", json={"title": "t"}, headers=headers)
    location, etag = created.headers["location"], created.headers["etag"]
    stale = await client.delete(location, headers={**headers, "If-Match": '"nope"'})
    assert stale.status_code == 412
    assert stale.headers["etag"] == etag
    weak = await client.delete(location, headers={**headers, "If-Match": f"W/{etag}"})
    assert weak.status_code == 412
    assert (await client.delete(location, headers={**headers, "If-Match": etag})).status_code == 204


async def test_viewer_reads_but_cannot_create(
    client: httpx.AsyncClient, services: Services
) -> None:
    viewer = await account(services, "vera", role="viewer")
    worker = await account(services, "wanda", role="worker")
    assert (
        await client.post("/api/v1/jobs", json={"title": "t"}, headers=viewer)
    ).status_code == 403
    assert (
        await client.post("/api/v1/jobs", json={"title": "t"}, headers=worker)
    ).status_code == 403
    assert (await client.get("/api/v1/jobs", headers=viewer)).status_code == 200
    assert (await client.get("/api/v1/jobs", headers=worker)).status_code == 200
    assert (await client.get("/api/v1/jobs")).status_code == 401
    assert (await client.post("/api/v1/jobs", json={"title": "t"})).status_code == 401
    assert (await client.get(f"/api/v1/jobs/{uuid.uuid4()}")).status_code == 401


async def test_the_schema_title_pattern_accepts_exactly_the_titles_the_api_accepts(
    client: httpx.AsyncClient, services: Services
) -> None:
    """Titles are stripped of whitespace; the published pattern must mean the same thing, for
    a generated client or a fuzzer reads "whitespace" as JSON Schema (ECMAScript) does."""
    headers = admin_auth(services)
    schema = (await client.get("/openapi.json")).json()
    pattern = re.compile(
        schema["components"]["schemas"]["JobCreate"]["properties"]["title"]["pattern"]
    )
    whitespace = [chr(n) for n in range(0x3001) if chr(n).isspace()]
    for title in [*whitespace, "\ufeff", "\u200b", "a", " a\u0085"]:
        for path in ("/api/v1/jobs", "/api/v1/collab/tasks"):
            response = await client.post(path, json={"title": title}, headers=headers)
            accepted = response.status_code == 201
            assert accepted == (pattern.search(title) is not None), (path, hex(ord(title[0])))
