"""Queues: counts kept as jobs move, settings only admins change, paused queues and capped
claims; on both backends."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import orjson
import pytest

from orchestrator.auth.users import Role
from orchestrator.db.changelog import changes_after, latest_revision
from orchestrator.queues.counts import fold_counts
from orchestrator.queues.queries import STATUSES
from orchestrator.services import Services
from tests.support.jobs import make_jobs
from tests.support.users import account, admin_auth

QUEUES = "/api/v1/queues"
JOBS = "/api/v1/jobs"
CLAIM = "/api/v1/jobs/claim"
Headers = dict[str, str]
ROLES: tuple[Role, ...] = ("member", "viewer", "worker")
ZERO = dict.fromkeys(STATUSES, 0)


@pytest.fixture
def admin(services: Services) -> Headers:
    return admin_auth(services)


@pytest.fixture
async def worker(services: Services) -> Headers:
    return await account(services, "worker-1", "worker")


async def queue_of(client: httpx.AsyncClient, headers: Headers, name: str) -> dict[str, Any]:
    response = await client.get(f"{QUEUES}/{name}", headers=headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def patch(
    client: httpx.AsyncClient, headers: Headers, name: str, body: Any
) -> httpx.Response:
    return await client.patch(f"{QUEUES}/{name}", json=body, headers=headers)


async def claim(
    client: httpx.AsyncClient, headers: Headers, queue: str, max_jobs: int = 1, wait: float = 0
) -> list[dict[str, Any]]:
    response = await client.post(
        CLAIM, json={"queues": [queue], "max_jobs": max_jobs, "wait": wait}, headers=headers
    )
    if response.status_code == 204:
        return []
    assert response.status_code == 200, response.text
    claims: list[dict[str, Any]] = response.json()["claims"]
    return claims


def lease(claim: dict[str, Any]) -> dict[str, Any]:
    return {k: claim["lease"][k] for k in ("token", "secret")}


async def complete(client: httpx.AsyncClient, headers: Headers, claim: dict[str, Any]) -> None:
    response = await client.post(
        f"{JOBS}/{claim['job']['id']}/complete", json=lease(claim), headers=headers
    )
    assert response.status_code == 200, response.text


async def counted(services: Services) -> dict[str, dict[str, int]]:
    """The counts as a scan of the jobs finds them."""
    rows = await services.db.fetch_all(
        "SELECT queue, status, count(*) AS n FROM jobs GROUP BY queue, status"
    )
    found: dict[str, dict[str, int]] = {}
    for row in rows:
        found.setdefault(row["queue"], dict(ZERO))[row["status"]] = int(row["n"])
    return found


async def shown(client: httpx.AsyncClient, headers: Headers) -> dict[str, dict[str, int]]:
    response = await client.get(QUEUES, headers=headers)
    assert response.status_code == 200, response.text
    return {item["name"]: item["counts"] for item in response.json()["items"]}


async def test_no_queue_without_jobs_or_settings(client: httpx.AsyncClient, admin: Headers) -> None:
    response = await client.get(QUEUES, headers=admin)
    assert response.status_code == 200
    assert response.json() == {"items": []}
    missing = await client.get(f"{QUEUES}/nowhere", headers=admin)
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == 404


async def test_counts_follow_every_transition(
    client: httpx.AsyncClient, services: Services, admin: Headers, worker: Headers
) -> None:
    await make_jobs(services.db, 6, queue="mail")
    await make_jobs(services.db, 2, queue="media")
    taken = await claim(client, worker, "mail", max_jobs=4)
    await complete(client, worker, taken[0])
    failed = await client.post(
        f"{JOBS}/{taken[1]['job']['id']}/fail",
        json={**lease(taken[1]), "retry": False},
        headers=worker,
    )
    assert failed.status_code == 200
    released = await client.post(
        f"{JOBS}/{taken[2]['job']['id']}/release", json=lease(taken[2]), headers=worker
    )
    assert released.status_code == 200
    media = (await client.get(f"{JOBS}?queue=media", headers=admin)).json()["jobs"]
    cancelled = await client.post(f"{JOBS}/{media[0]['id']}/cancel", headers=admin)
    assert cancelled.status_code == 200
    deleted = await client.delete(f"{JOBS}/{media[1]['id']}", headers=admin)
    assert deleted.status_code == 204
    retried = await client.post(f"{JOBS}/{taken[1]['job']['id']}/retry", headers=admin)
    assert retried.status_code == 200
    bulk = await client.post(
        f"{JOBS}/bulk",
        json={"action": "cancel", "filter": {"status": "pending", "queue": "mail"}},
        headers=admin,
    )
    assert bulk.status_code == 200
    expected = await counted(services)
    assert expected["mail"] == {**ZERO, "running": 1, "succeeded": 1, "cancelled": 4}
    assert await shown(client, admin) == expected
    # Folded (PostgreSQL keeps the changes apart until then), the same.
    await fold_counts(services.db)
    assert await shown(client, admin) == expected
    one = await queue_of(client, admin, "media")
    assert one == {
        "name": "media",
        "paused": False,
        "max_running": None,
        "counts": {**ZERO, "cancelled": 1},
        "scheduled": 0,
        "oldest_pending_at": None,
    }


async def test_scheduled_jobs_and_the_oldest_due_job(
    client: httpx.AsyncClient, services: Services, admin: Headers
) -> None:
    await make_jobs(services.db, 3, queue="later", due_in=3600)
    first = await client.post(JOBS, json={"title": "now", "queue": "later"}, headers=admin)
    await client.post(JOBS, json={"title": "now too", "queue": "later"}, headers=admin)
    queue = await queue_of(client, admin, "later")
    assert queue["counts"]["pending"] == 5
    assert queue["scheduled"] == 3
    assert queue["oldest_pending_at"] == first.json()["created_at"]


async def test_only_admins_change_a_queue(
    client: httpx.AsyncClient, services: Services, admin: Headers
) -> None:
    await make_jobs(services.db, queue="mail")
    before = await queue_of(client, admin, "mail")
    users = [await account(services, f"a-{role}", role) for role in ROLES]
    revision = await latest_revision(services.db)
    for role, headers in zip(ROLES, users, strict=True):
        refused = await patch(client, headers, "mail", {"paused": True})
        assert refused.status_code == 403, role
        assert refused.json()["error"]["code"] == 403
        assert (await client.get(QUEUES, headers=headers)).status_code == 200
    assert await queue_of(client, admin, "mail") == before
    assert await latest_revision(services.db) == revision


@pytest.mark.parametrize(
    "body",
    [
        {"max_running": 0},
        {"max_running": -3},
        {"max_running": 1.5},
        {"max_running": "2"},
        {"max_running": True},
        {"paused": "yes"},
        {"paused": None},
        {"paused": True, "colour": "red"},
        [],
    ],
)
async def test_bad_settings_get_422_and_change_nothing(
    client: httpx.AsyncClient, services: Services, admin: Headers, body: Any
) -> None:
    revision = await latest_revision(services.db)
    refused = await patch(client, admin, "mail", body)
    assert refused.status_code == 422, refused.text
    assert refused.json()["error"]["code"] == 422
    assert (await client.get(f"{QUEUES}/mail", headers=admin)).status_code == 404
    assert await latest_revision(services.db) == revision


async def test_settings_are_kept_changed_field_by_field_and_logged(
    client: httpx.AsyncClient, services: Services, admin: Headers
) -> None:
    since = await latest_revision(services.db)
    paused = await patch(client, admin, "deploys", {"paused": True})
    assert paused.status_code == 200, paused.text
    assert paused.json() == {
        "name": "deploys",
        "paused": True,
        "max_running": None,
        "counts": ZERO,
        "scheduled": 0,
        "oldest_pending_at": None,
    }
    capped = await patch(client, admin, "deploys", {"max_running": 2.0})
    assert (capped.json()["paused"], capped.json()["max_running"]) == (True, 2)
    resumed = await patch(client, admin, "deploys", {"paused": False})
    assert (resumed.json()["paused"], resumed.json()["max_running"]) == (False, 2)
    uncapped = await patch(client, admin, "deploys", {"max_running": None})
    assert (uncapped.json()["paused"], uncapped.json()["max_running"]) == (False, None)
    # A queue with settings and no jobs is listed; its ETag is its body's.
    assert [q["name"] for q in (await client.get(QUEUES, headers=admin)).json()["items"]] == [
        "deploys"
    ]
    read = await client.get(f"{QUEUES}/deploys", headers=admin)
    assert read.json() == uncapped.json()
    again = await client.get(
        f"{QUEUES}/deploys", headers={**admin, "If-None-Match": read.headers["etag"]}
    )
    assert again.status_code == 304
    logged = [
        c for c in await changes_after(services.db, revision=since) if c.collection == "queues"
    ]
    assert [(c.op, c.resource_id) for c in logged] == [("update", "deploys")] * 4
    assert [orjson.loads(c.data or "null") for c in logged] == [
        paused.json(),
        capped.json(),
        resumed.json(),
        uncapped.json(),
    ]


async def test_a_paused_queue_hands_out_nothing_while_its_running_jobs_go_on(
    client: httpx.AsyncClient, services: Services, admin: Headers, worker: Headers
) -> None:
    await make_jobs(services.db, 3, queue="mail")
    [running] = await claim(client, worker, "mail")
    assert (await patch(client, admin, "mail", {"paused": True})).status_code == 200
    assert await claim(client, worker, "mail", max_jobs=5) == []
    beat = await client.post(
        f"{JOBS}/{running['job']['id']}/heartbeat", json=lease(running), headers=worker
    )
    assert beat.status_code == 200
    # Complete-and-claim reports the job and claims nothing.
    answer = await client.post(
        f"{JOBS}/{running['job']['id']}/complete",
        json={**lease(running), "claim": {"queues": ["mail"], "max_jobs": 2}},
        headers=worker,
    )
    assert answer.status_code == 200
    assert (answer.json()["job"]["status"], answer.json()["claims"]) == ("succeeded", [])
    assert (await patch(client, admin, "mail", {"paused": False})).status_code == 200
    assert len(await claim(client, worker, "mail", max_jobs=5)) == 2


async def test_a_batched_claim_takes_no_more_than_the_room_under_the_cap(
    client: httpx.AsyncClient, services: Services, admin: Headers, worker: Headers
) -> None:
    await make_jobs(services.db, 10, queue="gpu")
    await make_jobs(services.db, 3, queue="cpu")
    assert (await patch(client, admin, "gpu", {"max_running": 2})).status_code == 200
    first = await claim(client, worker, "gpu", max_jobs=8)
    assert len(first) == 2
    assert await claim(client, worker, "gpu", max_jobs=8) == []
    # Across queues, the capped one gives nothing and the other everything it has.
    both = await client.post(CLAIM, json={"queues": ["gpu", "cpu"], "max_jobs": 8}, headers=worker)
    assert [c["job"]["queue"] for c in both.json()["claims"]] == ["cpu"] * 3
    await complete(client, worker, first[0])
    assert len(await claim(client, worker, "gpu", max_jobs=8)) == 1
    # A lower cap leaves running jobs be, and hands out nothing until under it.
    assert (await patch(client, admin, "gpu", {"max_running": 1})).status_code == 200
    await complete(client, worker, first[1])
    assert await claim(client, worker, "gpu", max_jobs=8) == []
    queue = await queue_of(client, admin, "gpu")
    assert (queue["counts"]["running"], queue["max_running"]) == (1, 1)


async def test_a_waiting_claim_is_woken_by_a_resume_and_by_a_free_slot(
    client: httpx.AsyncClient, services: Services, admin: Headers, worker: Headers
) -> None:
    await make_jobs(services.db, 3, queue="mail")
    assert (await patch(client, admin, "mail", {"paused": True})).status_code == 200
    waiting = asyncio.ensure_future(claim(client, worker, "mail", max_jobs=1, wait=20))
    await asyncio.sleep(0)
    assert (
        await patch(client, admin, "mail", {"paused": False, "max_running": 1})
    ).status_code == 200
    [first] = await asyncio.wait_for(waiting, 15)
    waiting = asyncio.ensure_future(claim(client, worker, "mail", max_jobs=1, wait=20))
    await asyncio.sleep(0)
    await complete(client, worker, first)
    [second] = await asyncio.wait_for(waiting, 15)
    assert second["job"]["id"] != first["job"]["id"]
