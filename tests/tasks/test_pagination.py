"""Keyset pages over tasks and jobs: limit, opaque cursor, next_cursor and Link."""

from __future__ import annotations

import itertools
import re

import httpx

from orchestrator.services import Services
from tests.support.users import admin_auth

LIST = "/api/v1/collab/state/tasks"


async def test_pages_walk_every_task_once_in_order(
    client: httpx.AsyncClient, services: Services
) -> None:
    headers = admin_auth(services)
    ids = []
    for n in range(7):
        created = await client.post(
            "/api/v1/collab/tasks", json={"title": f"t{n}"}, headers=headers
        )
        ids.append(created.json()["id"])
    seen: list[str] = []
    url: str | None = f"{LIST}?limit=3"
    pages = 0
    while url is not None:
        response = await client.get(url, headers=headers)
        assert response.status_code == 200
        body = response.json()
        assert body["kind"] == "tasks"
        seen += [item["id"] for item in body["items"]]
        pages += 1
        link = response.headers.get("link")
        if body["next_cursor"] is None:
            assert link is None
            url = None
        else:
            match = re.fullmatch(r'<([^>]+)>; rel="next"', link or "")
            assert match is not None
            assert body["next_cursor"] in match.group(1)
            url = match.group(1)
    assert seen == ids
    assert pages == 3


async def test_jobs_filter_by_status_and_page(
    client: httpx.AsyncClient, services: Services
) -> None:
    headers = admin_auth(services)
    for n in range(3):
        await client.post("/api/v1/jobs", json={"title": f"j{n}"}, headers=headers)
    pending = await client.get("/api/v1/jobs?status=pending&limit=2", headers=headers)
    assert len(pending.json()["jobs"]) == 2
    assert "status=pending" in pending.headers["link"]
    rest = await client.get(
        f"/api/v1/jobs?status=pending&limit=2&cursor={pending.json()['next_cursor']}",
        headers=headers,
    )
    assert len(rest.json()["jobs"]) == 1
    assert rest.json()["next_cursor"] is None
    running = await client.get("/api/v1/jobs?status=running", headers=headers)
    assert running.json() == {"jobs": []}


INVALID_QUERIES = [
    "limit=0",
    "limit=1001",
    "limit=-1",
    "limit=abc",
    "limit=1.5",
    "limit=",
    "cursor=not-a-cursor",
    "cursor=",
    "limit=1&limit=2",
]


async def test_invalid_list_parameters_get_422(
    client: httpx.AsyncClient, services: Services
) -> None:
    headers = admin_auth(services)
    for path, query in itertools.product((LIST, "/api/v1/jobs"), INVALID_QUERIES):
        response = await client.get(f"{path}?{query}", headers=headers)
        assert response.status_code == 422, (path, query)
        assert response.json()["error"]["type"] == "validation_error"

    for query in ("status=done", "status=", "status=pending&status=running"):
        assert (await client.get(f"/api/v1/jobs?{query}", headers=headers)).status_code == 422
    for limit in (1, 1000):
        response = await client.get(f"{LIST}?limit={limit}", headers=headers)
        assert response.status_code == 200
        assert response.json() == {"kind": "tasks", "items": [], "next_cursor": None}
