"""Retrying a job by hand, and cancelling, retrying or deleting many at once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from orchestrator.db.changelog import changes_after, latest_revision
from orchestrator.services import Services
from tests.support.users import account, admin_auth

JOBS = "/api/v1/jobs"


async def create(client: httpx.AsyncClient, headers: dict[str, str], **fields: Any) -> str:
    response = await client.post(JOBS, json={"title": "a job", **fields}, headers=headers)
    assert response.status_code == 201, response.text
    job_id: str = response.json()["id"]
    return job_id


async def failed_job(
    client: httpx.AsyncClient, headers: dict[str, str], worker: dict[str, str], queue: str
) -> str:
    """A job that ran once and failed for good."""
    job_id = await create(client, headers, queue=queue, max_attempts=1)
    claim = await client.post(f"{JOBS}/claim", json={"queues": [queue]}, headers=worker)
    assert claim.json()["job"]["id"] == job_id
    lease = {key: claim.json()["lease"][key] for key in ("token", "secret")}
    failed = await client.post(
        f"{JOBS}/{job_id}/fail", json={**lease, "error": "boom"}, headers=worker
    )
    assert failed.json()["status"] == "failed"
    return job_id


async def read(client: httpx.AsyncClient, headers: dict[str, str], job_id: str) -> Any:
    return (await client.get(f"{JOBS}/{job_id}", headers=headers)).json()


async def test_a_failed_job_retried_by_its_creator_is_pending_again_with_a_clean_slate(
    client: httpx.AsyncClient, services: Services
) -> None:
    alice = await account(services, "alice")
    worker = await account(services, "robot", role="worker")
    job_id = await failed_job(client, alice, worker, "q")
    before = await read(client, alice, job_id)
    assert (before["attempts"], before["error"]) == (1, "boom")

    response = await client.post(f"{JOBS}/{job_id}/retry", headers=alice)
    assert response.status_code == 200
    job = response.json()
    assert job["status"] == "pending"
    assert (job["attempts"], job["error"], job["finished_at"], job["run_at"]) == (
        0,
        None,
        None,
        None,
    )
    assert job["version"] == before["version"] + 1
    assert (
        response.headers["etag"]
        == (await client.get(f"{JOBS}/{job_id}", headers=alice)).headers["etag"]
    )
    # It runs again.
    claim = await client.post(f"{JOBS}/claim", json={"queues": ["q"]}, headers=worker)
    assert claim.json()["job"]["id"] == job_id


async def test_retry_with_run_at_and_who_may_retry_what(
    client: httpx.AsyncClient, services: Services
) -> None:
    alice = await account(services, "alice")
    bob = await account(services, "bob")
    viewer = await account(services, "vera", role="viewer")
    job_id = await create(client, alice, queue="q")
    assert (await client.post(f"{JOBS}/{job_id}/retry", headers=alice)).status_code == 409
    await client.post(f"{JOBS}/{job_id}/cancel", headers=alice)

    assert (await client.post(f"{JOBS}/{job_id}/retry", headers=bob)).status_code == 403
    assert (await client.post(f"{JOBS}/{job_id}/retry", headers=viewer)).status_code == 403
    missing = f"{JOBS}/00000000-0000-4000-8000-000000000000/retry"
    assert (await client.post(missing, headers=alice)).status_code == 404
    bad = await client.post(f"{JOBS}/{job_id}/retry", json={"run_at": "soon"}, headers=alice)
    assert bad.status_code == 422
    assert (await read(client, alice, job_id))["status"] == "cancelled"

    later = datetime.now(UTC) + timedelta(hours=1)
    response = await client.post(
        f"{JOBS}/{job_id}/retry", json={"run_at": later.isoformat()}, headers=admin_auth(services)
    )
    assert response.status_code == 200
    assert datetime.fromisoformat(response.json()["run_at"]) == later
    again = await client.post(f"{JOBS}/{job_id}/retry", headers=alice)
    assert again.status_code == 409
    assert again.json()["error"]["code"] == 409


async def test_a_retry_never_makes_a_second_unfinished_holder_of_a_unique_key(
    client: httpx.AsyncClient, services: Services
) -> None:
    headers = admin_auth(services)
    first = await create(client, headers, queue="q", unique_key="nightly")
    await client.post(f"{JOBS}/{first}/cancel", headers=headers)
    await create(client, headers, queue="q", unique_key="nightly")
    response = await client.post(f"{JOBS}/{first}/retry", headers=headers)
    assert response.status_code == 409
    assert "unique_key" in response.json()["error"]["message"]
    bulk = await client.post(
        f"{JOBS}/bulk", json={"action": "retry", "ids": [first]}, headers=headers
    )
    assert bulk.json() == {"matched": 1, "changed": 0}


async def test_bulk_cancel_by_ids_acts_on_a_members_own_jobs_only(
    client: httpx.AsyncClient, services: Services
) -> None:
    alice = await account(services, "alice")
    bob = await account(services, "bob")
    mine = [await create(client, alice) for _ in range(3)]
    theirs = await create(client, bob)
    revision = await latest_revision(services.db)

    response = await client.post(
        f"{JOBS}/bulk", json={"action": "cancel", "ids": [*mine, theirs]}, headers=alice
    )
    assert response.status_code == 200
    assert response.json() == {"matched": 3, "changed": 3}
    assert [(await read(client, alice, j))["status"] for j in mine] == ["cancelled"] * 3
    assert (await read(client, alice, theirs))["status"] == "pending"

    # One change per job, each with the body the single route would have logged.
    changes = await changes_after(services.db, revision=revision)
    assert [(c.collection, c.op, c.resource_id) for c in changes] == [
        ("jobs", "update", j) for j in mine
    ]
    for change in changes:
        assert change.data is not None
        assert '"status":"cancelled"' in change.data

    # Again: matched, but nothing left to change.
    again = await client.post(f"{JOBS}/bulk", json={"action": "cancel", "ids": mine}, headers=alice)
    assert again.json() == {"matched": 3, "changed": 0}


async def test_bulk_by_filter_and_limit_as_admin(
    client: httpx.AsyncClient, services: Services
) -> None:
    admin = admin_auth(services)
    alice = await account(services, "alice")
    old = [await create(client, alice, queue="batch") for _ in range(4)]
    cutoff = datetime.now(UTC).isoformat()
    await create(client, alice, queue="batch")
    await create(client, alice, queue="other")

    filtered = {"queue": "batch", "created_before": cutoff, "status": "pending"}
    response = await client.post(
        f"{JOBS}/bulk", json={"action": "cancel", "filter": filtered, "limit": 3}, headers=admin
    )
    assert response.json() == {"matched": 3, "changed": 3}
    statuses = [(await read(client, admin, j))["status"] for j in old]
    assert statuses == ["cancelled", "cancelled", "cancelled", "pending"]  # oldest first

    retried = await client.post(
        f"{JOBS}/bulk", json={"action": "retry", "filter": {"status": "cancelled"}}, headers=admin
    )
    assert retried.json() == {"matched": 3, "changed": 3}
    assert [(await read(client, admin, j))["status"] for j in old] == ["pending"] * 4

    revision = await latest_revision(services.db)
    deleted = await client.post(
        f"{JOBS}/bulk", json={"action": "delete", "filter": {"queue": "batch"}}, headers=admin
    )
    assert deleted.json() == {"matched": 5, "changed": 5}
    listed = (await client.get(JOBS, headers=admin)).json()["jobs"]
    assert [job["queue"] for job in listed] == ["other"]
    changes = await changes_after(services.db, revision=revision)
    assert [(c.op, c.data) for c in changes] == [("delete", None)] * 5


async def test_bad_bulk_requests_get_422_and_change_nothing(
    client: httpx.AsyncClient, services: Services
) -> None:
    admin = admin_auth(services)
    job_id = await create(client, admin)
    viewer = await account(services, "vera", role="viewer")
    for body in [
        {"action": "cancel", "ids": [job_id], "unique_key": "x"},
        {"action": "cancel"},
        {"action": "cancel", "ids": [job_id], "filter": {}},
        {"action": "explode", "ids": [job_id]},
        {"action": "cancel", "ids": []},
        {"action": "cancel", "ids": ["not-an-id"]},
        {"action": "cancel", "filter": {"created_before": "2026-01-01T00:00:00"}},
        {"action": "cancel", "filter": {"status": "bogus"}},
        {"action": "cancel", "filter": {}, "limit": 10_001},
        {"action": "cancel", "ids": [job_id] * 10_001},
    ]:
        response = await client.post(f"{JOBS}/bulk", json=body, headers=admin)
        assert response.status_code == 422, (body, response.text)
        assert response.json()["error"]["type"] == "validation_error"
    unique = await client.post(
        f"{JOBS}/bulk", json={"action": "cancel", "ids": [job_id], "unique_key": "x"}, headers=admin
    )
    assert "unique_key" in str(unique.json()["error"]["details"])
    forbidden = await client.post(
        f"{JOBS}/bulk", json={"action": "cancel", "ids": [job_id]}, headers=viewer
    )
    assert forbidden.status_code == 403
    assert (await read(client, admin, job_id))["status"] == "pending"


async def test_a_running_or_succeeded_job_cannot_be_retried(
    client: httpx.AsyncClient, services: Services
) -> None:
    admin = admin_auth(services)
    worker = await account(services, "robot", role="worker")
    job_id = await create(client, admin, queue="q")
    claim = (await client.post(f"{JOBS}/claim", json={"queues": ["q"]}, headers=worker)).json()
    running = await client.post(f"{JOBS}/{job_id}/retry", headers=admin)
    assert running.status_code == 409
    assert "running" in running.json()["error"]["message"]
    lease = {key: claim["lease"][key] for key in ("token", "secret")}
    await client.post(f"{JOBS}/{job_id}/complete", json=lease, headers=worker)
    succeeded = await client.post(f"{JOBS}/{job_id}/retry", headers=admin)
    assert succeeded.status_code == 409
    assert "succeeded" in succeeded.json()["error"]["message"]
    assert (await read(client, admin, job_id))["status"] == "succeeded"
