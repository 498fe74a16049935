"""Listing jobs by queue, by text in the title, newest first, and the worker each job had."""

from __future__ import annotations

import httpx

from orchestrator.services import Services
from tests.support.users import account, admin_auth


async def _create(
    client: httpx.AsyncClient, headers: dict[str, str], title: str, queue: str = "default"
) -> str:
    response = await client.post(
        "/api/v1/jobs", json={"title": title, "queue": queue}, headers=headers
    )
    assert response.status_code == 201, response.text
    job_id: str = response.json()["id"]
    return job_id


async def _titles(client: httpx.AsyncClient, headers: dict[str, str], query: str) -> list[str]:
    response = await client.get(f"/api/v1/jobs?{query}", headers=headers)
    assert response.status_code == 200, response.text
    return [job["name"] for job in response.json()["jobs"]]


async def test_jobs_filter_by_queue_and_by_text_in_the_title(
    client: httpx.AsyncClient, services: Services
) -> None:
    headers = admin_auth(services)
    await _create(client, headers, "Resize photo 1", "images")
    await _create(client, headers, "Send invoice", "mail")
    await _create(client, headers, "resize PHOTO 2", "images")
    await _create(client, headers, "100% done_ok", "mail")

    assert await _titles(client, headers, "queue=images") == ["Resize photo 1", "resize PHOTO 2"]
    assert await _titles(client, headers, "search=photo") == ["Resize photo 1", "resize PHOTO 2"]
    assert await _titles(client, headers, "search=PHOTO%202&queue=images") == ["resize PHOTO 2"]
    assert await _titles(client, headers, "search=photo&queue=mail") == []
    # LIKE's wildcards are plain characters in a search.
    assert await _titles(client, headers, "search=%25") == ["100% done_ok"]
    assert await _titles(client, headers, "search=e_o") == ["100% done_ok"]
    assert await _titles(client, headers, "search=0%25%20d") == ["100% done_ok"]
    assert await _titles(client, headers, "search=x_x") == []
    assert await _titles(client, headers, "status=running&queue=images") == []


async def test_newest_first_pages_with_cursors_and_keeps_the_filters(
    client: httpx.AsyncClient, services: Services
) -> None:
    headers = await account(services, "pager")
    titles = [f"batch job {n}" for n in range(5)]
    for title in titles:
        await _create(client, headers, title, "batch")
    await _create(client, headers, "other queue", "elsewhere")

    seen: list[str] = []
    url = "/api/v1/jobs?queue=batch&order=desc&limit=2"
    while url:
        response = await client.get(url, headers=headers)
        assert response.status_code == 200
        body = response.json()
        seen += [job["name"] for job in body["jobs"]]
        link = response.headers.get("link")
        if body["next_cursor"] is None:
            assert link is None
            break
        assert "queue=batch" in link
        assert "order=desc" in link
        url = link.split(";")[0].strip("<>")
    assert seen == titles[::-1]
    assert await _titles(client, headers, "queue=batch&order=asc") == titles


async def test_bad_filters_get_422_in_the_envelope(
    client: httpx.AsyncClient, services: Services
) -> None:
    headers = admin_auth(services)
    for query, field in [
        ("order=sideways", "order"),
        ("order=", "order"),
        ("queue=", "queue"),
        ("search=", "search"),
        ("search=" + "x" * 201, "search"),
        ("queue=" + "q" * 101, "queue"),
        ("search=a%00b", "search"),
        ("queue=a&queue=b", "queue"),
    ]:
        response = await client.get(f"/api/v1/jobs?{query}", headers=headers)
        assert response.status_code == 422, query
        error = response.json()["error"]
        assert error["details"][0]["field"] == field, query


async def test_a_claimed_job_shows_its_worker(
    client: httpx.AsyncClient, services: Services
) -> None:
    headers = admin_auth(services)
    job_id = await _create(client, headers, "needs a worker", "workers-shown")
    assert (await client.get(f"/api/v1/jobs/{job_id}", headers=headers)).json()["worker"] is None
    claim = await client.post(
        "/api/v1/jobs/claim",
        json={"queues": ["workers-shown"], "worker": "host-7/pid-42"},
        headers=headers,
    )
    assert claim.status_code == 200, claim.text
    assert claim.json()["job"]["worker"] == "host-7/pid-42"
    listed = (await client.get("/api/v1/jobs?status=running", headers=headers)).json()["jobs"]
    assert [job["worker"] for job in listed] == ["host-7/pid-42"]


async def test_the_list_parameters_are_in_the_openapi_document(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    parameters = {p["name"] for p in spec["paths"]["/api/v1/jobs"]["get"]["parameters"]}
    assert {"status", "queue", "search", "order", "limit"} <= parameters
