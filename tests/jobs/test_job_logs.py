"""Job logs over HTTP: appended with the lease, paged by number, the newest 10,000 kept; on
both backends."""

from __future__ import annotations

from typing import Any

import httpx
import orjson
import pytest

from orchestrator.db.changelog import changes_after, latest_revision
from orchestrator.services import Services
from tests.support.jobs import make_jobs
from tests.support.users import admin_auth, user_headers
from tests.workers.support import Headers, claimed, held

JOBS = "/api/v1/jobs"


@pytest.fixture
async def worker(client: httpx.AsyncClient, services: Services) -> Headers:
    return await user_headers(client, services, "worker-1", "worker")


async def append(
    client: httpx.AsyncClient, headers: Headers, job_id: str, lease: dict[str, Any], lines: Any
) -> httpx.Response:
    return await client.post(
        f"{JOBS}/{job_id}/logs", json={**lease, "lines": lines}, headers=headers
    )


async def page(
    client: httpx.AsyncClient, headers: Headers, job_id: str, **params: Any
) -> dict[str, Any]:
    response = await client.get(f"{JOBS}/{job_id}/logs", params=params, headers=headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def stored(services: Services, job_id: str) -> int:
    row = await services.db.fetch_one(
        "SELECT count(*) AS n FROM job_logs WHERE job_id = :id", {"id": job_id}
    )
    assert row is not None
    return int(row["n"])


def refused(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    assert error["code"] == status
    return error


async def running_job(
    client: httpx.AsyncClient, services: Services, worker: Headers
) -> tuple[str, dict[str, Any]]:
    [job_id] = await make_jobs(services.db)
    answer = await claimed(client, worker)
    assert answer["job"]["id"] == job_id
    return job_id, held(answer)


async def test_appended_lines_are_numbered_from_1_and_paged_after_a_number(
    client: httpx.AsyncClient, services: Services, worker: Headers
) -> None:
    job_id, lease = await running_job(client, services, worker)
    first = await append(client, worker, job_id, lease, ["starting", "", "naïve ☃ line"])
    assert first.status_code == 200, first.text
    items = first.json()["items"]
    assert [(i["n"], i["line"]) for i in items] == [(1, "starting"), (2, ""), (3, "naïve ☃ line")]
    assert all(i["created_at"].endswith("+00:00") for i in items)
    second = await append(client, worker, job_id, lease, [f"step {k}" for k in range(5)])
    assert [i["n"] for i in second.json()["items"]] == [4, 5, 6, 7, 8]

    viewer = await user_headers(client, services, "viewer-1", "viewer")
    whole = await page(client, viewer, job_id)
    assert [i["n"] for i in whole["items"]] == list(range(1, 9))
    assert whole["items"][:3] == items
    assert whole["next_after"] is None

    response = await client.get(f"{JOBS}/{job_id}/logs?after=2&limit=3", headers=viewer)
    body = response.json()
    assert [i["line"] for i in body["items"]] == ["naïve ☃ line", "step 0", "step 1"]
    assert body["next_after"] == 5
    assert response.headers["link"] == f'<{JOBS}/{job_id}/logs?after=5&limit=3>; rel="next"'
    rest = await page(client, viewer, job_id, after=5, limit=3)
    assert [i["n"] for i in rest["items"]] == [6, 7, 8]
    assert rest["next_after"] is None
    assert await page(client, viewer, job_id, after=8) == {"items": [], "next_after": None}

    etag = response.headers["etag"]
    again = await client.get(
        f"{JOBS}/{job_id}/logs?after=2&limit=3", headers={**viewer, "If-None-Match": etag}
    )
    assert again.status_code == 304


async def test_lines_go_on_numbering_across_attempts_and_go_with_the_job(
    client: httpx.AsyncClient, services: Services, worker: Headers
) -> None:
    job_id, lease = await running_job(client, services, worker)
    assert (await append(client, worker, job_id, lease, ["first try"])).status_code == 200
    released = await client.post(f"{JOBS}/{job_id}/release", json=lease, headers=worker)
    assert released.status_code == 200
    second = held(await claimed(client, worker))
    assert (await append(client, worker, job_id, second, ["second try"])).json()["items"][0][
        "n"
    ] == 2
    deleted = await client.delete(f"{JOBS}/{job_id}", headers=admin_auth(services))
    assert deleted.status_code == 204
    assert await stored(services, job_id) == 0
    refused(await client.get(f"{JOBS}/{job_id}/logs", headers=worker), 404)


@pytest.mark.parametrize(
    ("lines", "field"),
    [
        (["x"] * 101, "lines"),
        (["x" * 5000], "lines.0"),
        (["ok", "é" * 2049], "lines.1"),  # 2,049 characters, 4,098 bytes
        ([], "lines"),
        (["nul \x00 here"], "body"),  # refused as the body is read
        ("not a list", "lines"),
        ([3], "lines.0"),
    ],
)
async def test_too_many_or_too_long_lines_get_422_and_nothing_is_stored(
    client: httpx.AsyncClient, services: Services, worker: Headers, lines: Any, field: str
) -> None:
    job_id, lease = await running_job(client, services, worker)
    before = await latest_revision(services.db)
    error = refused(await append(client, worker, job_id, lease, lines), 422)
    assert error["type"] == "validation_error"
    assert field in [detail["field"] for detail in error["details"]]
    assert await stored(services, job_id) == 0
    assert await latest_revision(services.db) == before
    # Nothing was numbered either: the next line is still the first.
    ok = await append(client, worker, job_id, lease, ["x"] * 100)
    assert ok.status_code == 200
    assert ok.json()["items"][0]["n"] == 1


async def test_a_line_of_exactly_4096_bytes_is_taken(
    client: httpx.AsyncClient, services: Services, worker: Headers
) -> None:
    job_id, lease = await running_job(client, services, worker)
    line = "€" * 1365 + "a"  # 3 * 1365 + 1 = 4,096 bytes
    response = await append(client, worker, job_id, lease, [line])
    assert response.status_code == 200, response.text
    assert (await page(client, worker, job_id))["items"][0]["line"] == line


async def test_a_job_keeps_its_newest_10000_lines(
    client: httpx.AsyncClient, services: Services, worker: Headers
) -> None:
    job_id, lease = await running_job(client, services, worker)
    for call in range(101):
        lines = [f"line {call * 100 + k + 1}" for k in range(100)]
        assert (await append(client, worker, job_id, lease, lines)).status_code == 200
    assert await stored(services, job_id) == 10_000
    first = await page(client, worker, job_id, limit=2)
    assert [(i["n"], i["line"]) for i in first["items"]] == [(101, "line 101"), (102, "line 102")]
    last = await page(client, worker, job_id, after=10_099, limit=1000)
    assert [i["n"] for i in last["items"]] == [10_100]


async def test_a_stale_token_or_a_wrong_secret_gets_409_and_stores_nothing(
    client: httpx.AsyncClient, services: Services, worker: Headers
) -> None:
    job_id, old = await running_job(client, services, worker)
    released = await client.post(f"{JOBS}/{job_id}/release", json=old, headers=worker)
    assert released.status_code == 200
    new = held(await claimed(client, worker))
    assert new["token"] == old["token"] + 1
    refused(await append(client, worker, job_id, old, ["late"]), 409)
    wrong = {"token": new["token"], "secret": old["secret"]}
    refused(await append(client, worker, job_id, wrong, ["forged"]), 409)
    assert await stored(services, job_id) == 0
    done = await client.post(f"{JOBS}/{job_id}/complete", json=new, headers=worker)
    assert done.status_code == 200
    # The job is finished: its lease no longer holds.
    refused(await append(client, worker, job_id, new, ["after the end"]), 409)
    assert await stored(services, job_id) == 0


async def test_another_account_gets_403_and_an_admin_may_use_the_lease(
    client: httpx.AsyncClient, services: Services, worker: Headers
) -> None:
    job_id, lease = await running_job(client, services, worker)
    other = await user_headers(client, services, "worker-2", "worker")
    refused(await append(client, other, job_id, lease, ["not mine"]), 403)
    member = await user_headers(client, services, "member-1", "member")
    refused(await append(client, member, job_id, lease, ["no role"]), 403)
    assert await stored(services, job_id) == 0
    by_admin = await append(client, admin_auth(services), job_id, lease, ["from an admin"])
    assert by_admin.status_code == 200
    unknown = "00000000-0000-4000-8000-000000000000"
    refused(await append(client, worker, unknown, lease, ["x"]), 409)  # its secret is wrong


async def test_reading_logs_refuses_bad_parameters_in_the_envelope(
    client: httpx.AsyncClient, services: Services, worker: Headers
) -> None:
    job_id, _ = await running_job(client, services, worker)
    for query in (
        "limit=0",
        "limit=1001",
        "limit=x",
        "after=-1",
        "after=1.5",
        "after=99999999999999999999",
        "after=\uff11",  # a fullwidth digit
        "after=1&after=2",
        "cursor=abc",
        "afterr=3",
    ):
        response = await client.get(f"{JOBS}/{job_id}/logs?{query}", headers=worker)
        assert refused(response, 422)["type"] == "validation_error", query
    refused(
        await client.get(f"{JOBS}/00000000-0000-4000-8000-000000000000/logs", headers=worker), 404
    )
    refused(await client.get(f"{JOBS}/{job_id}/logs"), 401)


async def test_one_change_per_append_carries_its_lines(
    client: httpx.AsyncClient, services: Services, worker: Headers
) -> None:
    job_id, lease = await running_job(client, services, worker)
    before = await latest_revision(services.db)
    await append(client, worker, job_id, lease, ["a", "b"])
    await append(client, worker, job_id, lease, ["c"])
    changes = [
        c for c in await changes_after(services.db, revision=before) if c.collection == "job_logs"
    ]
    assert [(c.op, c.resource_id) for c in changes] == [("create", job_id)] * 2
    bodies = [orjson.loads(c.data or "null") for c in changes]
    assert [[(i["n"], i["line"]) for i in b["lines"]] for b in bodies] == [
        [(1, "a"), (2, "b")],
        [(3, "c")],
    ]
    assert bodies[0]["job_id"] == job_id


async def test_the_openapi_document_describes_the_log_routes(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    path = spec["paths"]["/api/v1/jobs/{job_id}/logs"]
    assert {"200", "403", "404", "409", "422"} <= set(path["post"]["responses"])
    assert {"200", "304", "404", "422"} <= set(path["get"]["responses"])
    assert {p["name"] for p in path["get"]["parameters"]} >= {"after", "limit"}
