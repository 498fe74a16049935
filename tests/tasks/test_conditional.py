"""RFC 9110 conditional requests on tasks, jobs and their lists."""

from __future__ import annotations

import uuid

import httpx

from orchestrator.services import Services
from tests.support.users import account, admin_auth

LIST = "/api/v1/collab/state/tasks"


async def _setup(client: httpx.AsyncClient, services: Services) -> tuple[dict[str, str], str, str]:
    """Admin headers, a task's location, and the tasks list ETag."""
    headers = admin_auth(services)
    created = await client.post("/api/v1/collab/tasks", json={"title": "t"}, headers=headers)
    listed = await client.get(LIST, headers=headers)
    return headers, created.headers["location"], listed.headers["etag"]


def _matrix(etag: str) -> list[tuple[str, int]]:
    """(If-None-Match value, expected status) for a resource whose ETag is `etag`."""
    return [
        (etag, 304),
        (f"W/{etag}", 304),  # weak comparison
        (f'"stale", {etag}', 304),
        (f'"a",W/"b" ,  {etag}', 304),
        ("*", 304),
        ('"stale"', 200),
        ('"stale", W/"older"', 200),
        (etag.strip('"'), 200),  # unquoted is not a tag
        ("", 200),
    ]


async def test_if_none_match_matrix(client: httpx.AsyncClient, services: Services) -> None:
    headers, location, _list_etag = await _setup(client, services)
    job = await client.post("/api/v1/jobs", json={"title": "j"}, headers=headers)
    for url in (LIST, location, job.headers["location"], "/api/v1/jobs", f"{LIST}?limit=1"):
        await _check_matrix(client, headers, url)


async def _check_matrix(client: httpx.AsyncClient, headers: dict[str, str], url: str) -> None:
    full = await client.get(url, headers=headers)
    etag = full.headers["etag"]
    for value, expected in _matrix(etag):
        response = await client.get(url, headers={**headers, "If-None-Match": value})
        assert response.status_code == expected, value
        assert response.headers["etag"] == etag
        assert response.headers["cache-control"] == "private, no-cache"
        assert "Authorization" in response.headers["vary"].replace(" ", "").split(",")
        if expected == 304:
            assert response.content == b""
        else:
            assert response.content == full.content


async def test_list_etag_changes_with_every_write(
    client: httpx.AsyncClient, services: Services
) -> None:
    headers, location, first = await _setup(client, services)
    seen = {first}
    patched = await client.patch(
        location, json={"title": "u"}, headers={**headers, "If-Match": "*"}
    )
    assert patched.status_code == 200
    after_patch = await client.get(LIST, headers={**headers, "If-None-Match": first})
    assert after_patch.status_code == 200
    seen.add(after_patch.headers["etag"])
    await client.post("/api/v1/collab/tasks", json={"title": "t2"}, headers=headers)
    after_create = await client.get(LIST, headers={**headers, "If-None-Match": first})
    seen.add(after_create.headers["etag"])
    await client.delete(location, headers={**headers, "If-Match": "*"})
    after_delete = await client.get(LIST, headers=headers)
    seen.add(after_delete.headers["etag"])
    assert len(seen) == 4
    assert len(after_delete.json()["items"]) == 1


async def test_job_writes_do_not_change_the_task_list(
    client: httpx.AsyncClient, services: Services
) -> None:
    headers, _location, etag = await _setup(client, services)
    await client.post("/api/v1/jobs", json={"title": "j"}, headers=headers)
    response = await client.get(LIST, headers={**headers, "If-None-Match": etag})
    assert response.status_code == 304


async def test_preconditions_ignored_on_401_403_404_and_422(
    client: httpx.AsyncClient, services: Services
) -> None:
    headers, location, _etag = await _setup(client, services)
    star = {"If-None-Match": "*", "If-Match": '"nope"'}
    assert (await client.get(LIST, headers=star)).status_code == 401
    assert (await client.get(location, headers=star)).status_code == 401
    missing = f"/api/v1/collab/tasks/{uuid.uuid4()}"
    assert (await client.get(missing, headers={**headers, **star})).status_code == 404
    assert (
        await client.patch(missing, json={"title": "x"}, headers={**headers, "If-Match": '"x"'})
    ).status_code == 404
    assert (await client.get(f"{LIST}?limit=0", headers={**headers, **star})).status_code == 422
    assert (
        await client.patch(location, json={"title": ""}, headers={**headers, "If-Match": '"x"'})
    ).status_code == 422
    viewer = await account(services, "vera", role="viewer")
    forbidden = await client.patch(
        location, json={"title": "x"}, headers={**viewer, "If-Match": '"x"'}
    )
    assert forbidden.status_code == 403


async def test_if_match_on_get_is_strong(client: httpx.AsyncClient, services: Services) -> None:
    headers, location, _etag = await _setup(client, services)
    etag = (await client.get(location, headers=headers)).headers["etag"]
    assert (await client.get(location, headers={**headers, "If-Match": etag})).status_code == 200
    failed = await client.get(location, headers={**headers, "If-Match": '"other"'})
    assert failed.status_code == 412
    assert failed.headers["etag"] == etag


async def test_same_state_same_etag_across_restart(
    client: httpx.AsyncClient, services: Services
) -> None:
    """The ETag is a pure function of the body: a fresh app answers the same tag."""
    from orchestrator.app import create_app

    headers, location, etag = await _setup(client, services)
    task_etag = (await client.get(location, headers=headers)).headers["etag"]
    other = create_app(services.settings)
    async with other.router.lifespan_context(other):
        transport = httpx.ASGITransport(app=other)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as second:
            assert (await second.get(LIST, headers=headers)).headers["etag"] == etag
            assert (await second.get(location, headers=headers)).headers["etag"] == task_etag
