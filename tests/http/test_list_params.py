"""List routes refuse query parameters they do not read: 422 in the envelope, naming them."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from orchestrator.db.migrate import upgrade
from orchestrator.services import Services
from tests.support.users import admin_auth


@pytest.fixture
async def database_url(tmp_path: Path) -> str:
    """SQLite only: parameters are read before any query."""
    url = f"sqlite:///{tmp_path / 'orchestrator.db'}"
    await asyncio.to_thread(upgrade, url)
    return url


@pytest.mark.parametrize(
    ("path", "unknown"),
    [
        ("/api/v1/jobs?colour=red", ["colour"]),
        ("/api/v1/jobs?queue=a&Status=running&q=x", ["Status", "q"]),
        ("/api/v1/collab/state/tasks?status=pending", ["status"]),
        ("/api/v1/users?limit=5", ["limit"]),
    ],
)
async def test_an_unknown_query_parameter_gets_422_naming_it(
    client: httpx.AsyncClient, services: Services, path: str, unknown: list[str]
) -> None:
    response = await client.get(path, headers=admin_auth(services))
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["path"] == path.partition("?")[0]
    assert [detail["field"] for detail in error["details"]] == unknown
    assert all(detail["reason"].startswith("unknown parameter") for detail in error["details"])


async def test_known_parameters_still_list(client: httpx.AsyncClient, services: Services) -> None:
    headers = admin_auth(services)
    created = await client.post("/api/v1/jobs", json={"title": "a", "queue": "q"}, headers=headers)
    assert created.status_code == 201
    query = "status=pending&queue=q&search=a&order=desc&limit=10"
    listed = await client.get(f"/api/v1/jobs?{query}", headers=headers)
    assert listed.status_code == 200
    assert [job["id"] for job in listed.json()["jobs"]] == [created.json()["id"]]
    tasks = await client.get("/api/v1/collab/state/tasks?limit=5", headers=headers)
    assert tasks.status_code == 200
    assert (await client.get("/api/v1/users", headers=headers)).status_code == 200
