"""Progress on heartbeats: stored at once, on the change feed at most once a second per job;
on both backends."""

from __future__ import annotations

import asyncio
import itertools
import time
from datetime import datetime
from typing import Any

import httpx
import orjson
import pytest

from orchestrator.db.changelog import changes_after, latest_revision
from orchestrator.services import Services
from tests.support.jobs import make_jobs
from tests.support.users import user_headers
from tests.workers.support import Headers, claimed, held

HEARTBEAT = "/api/v1/jobs/heartbeat"


@pytest.fixture
async def worker(client: httpx.AsyncClient, services: Services) -> Headers:
    return await user_headers(client, services, "worker-1", "worker")


async def beat(
    client: httpx.AsyncClient, headers: Headers, job_id: str, lease: dict[str, Any], **body: Any
) -> httpx.Response:
    return await client.post(
        f"/api/v1/jobs/{job_id}/heartbeat", json={**lease, **body}, headers=headers
    )


async def job(client: httpx.AsyncClient, headers: Headers, job_id: str) -> dict[str, Any]:
    response = await client.get(f"/api/v1/jobs/{job_id}", headers=headers)
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


async def progress_changes(services: Services, job_id: str, after: int) -> list[dict[str, Any]]:
    """The job's bodies in the change log after `after`, whose progress differs from the one
    before (each a change the progress made)."""
    bodies = []
    last: tuple[Any, Any] = (None, None)
    for change in await changes_after(services.db, revision=after, limit=100_000):
        if change.collection == "jobs" and change.resource_id == job_id and change.data:
            body = orjson.loads(change.data)
            seen = (body["progress"], body["progress_message"])
            if seen != last:
                bodies.append(body)
            last = seen
    return bodies


async def test_a_heartbeat_stores_progress_and_message_and_the_job_shows_them(
    client: httpx.AsyncClient, services: Services, worker: Headers
) -> None:
    [job_id] = await make_jobs(services.db)
    assert (await job(client, worker, job_id))["progress"] is None
    lease = held(await claimed(client, worker))
    answer = await beat(client, worker, job_id, lease, progress=0.25, message="reading input")
    assert answer.status_code == 200, answer.text
    body = await job(client, worker, job_id)
    assert (body["progress"], body["progress_message"]) == (0.25, "reading input")
    # Each field not given is kept; integers are fractions too.
    assert (await beat(client, worker, job_id, lease, progress=1)).status_code == 200
    body = await job(client, worker, job_id)
    assert (body["progress"], body["progress_message"]) == (1.0, "reading input")
    batched = await client.post(
        HEARTBEAT,
        json={"leases": [{"id": job_id, **lease, "message": "writing output"}]},
        headers=worker,
    )
    assert batched.json()["leases"][0]["code"] == 200
    body = await job(client, worker, job_id)
    assert (body["progress"], body["progress_message"]) == (1.0, "writing output")
    # The final body keeps the last progress; its change carries it.
    done = await client.post(
        f"/api/v1/jobs/{job_id}/complete", json={**lease, "result": None}, headers=worker
    )
    assert (done.json()["progress"], done.json()["progress_message"]) == (1.0, "writing output")


@pytest.mark.parametrize(
    "bad",
    [
        {"progress": 1.5},
        {"progress": -0.1},
        {"progress": True},
        {"progress": "0.5"},
        {"message": "x" * 1001},
        {"message": "nul\x00"},
        {"message": 7},
    ],
)
async def test_bad_progress_gets_422_in_the_envelope_and_changes_nothing(
    client: httpx.AsyncClient, services: Services, worker: Headers, bad: dict[str, Any]
) -> None:
    [job_id] = await make_jobs(services.db)
    lease = held(await claimed(client, worker))
    assert (await beat(client, worker, job_id, lease, progress=0.5, message="ok")).is_success
    before = await job(client, worker, job_id)
    revision = await latest_revision(services.db)
    for answer in (
        await beat(client, worker, job_id, lease, **bad),
        await client.post(
            HEARTBEAT, json={"leases": [{"id": job_id, **lease, **bad}]}, headers=worker
        ),
    ):
        assert answer.status_code == 422, answer.text
        error = answer.json()["error"]
        assert error["code"] == 422
        assert error["path"].startswith("/api/v1/jobs/")
    assert await job(client, worker, job_id) == before
    assert await latest_revision(services.db) == revision


async def test_progress_100_times_a_second_reaches_the_feed_at_most_once_a_second_per_job(
    client: httpx.AsyncClient, services: Services, worker: Headers
) -> None:
    first, second = await make_jobs(services.db, 2)
    leases = {
        claim["job"]["id"]: held(claim)
        for claim in [await claimed(client, worker), await claimed(client, worker)]
    }
    revision = await latest_revision(services.db)
    writes = 0
    started = time.monotonic()
    # The load: 100 writes a second per job (as fast as the machine goes, if slower), for at
    # least 2.5 s and at least 100 writes.
    while time.monotonic() - started < 2.5 or writes < 100:
        writes += 1
        items = [
            {"id": job_id, **lease, "progress": writes / 1000, "message": f"step {writes}"}
            for job_id, lease in leases.items()
        ]
        answer = await client.post(HEARTBEAT, json={"leases": items}, headers=worker)
        assert answer.status_code == 200
        await asyncio.sleep(0.01)
    for job_id in (first, second):
        # Every write is stored at once.
        body = await job(client, worker, job_id)
        assert (body["progress"], body["progress_message"]) == (writes / 1000, f"step {writes}")
        changes = await progress_changes(services, job_id, revision)
        stamps = [datetime.fromisoformat(body["updated_at"]) for body in changes]
        gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(stamps)]
        assert len(changes) >= 2
        assert all(gap >= 1.0 for gap in gaps), gaps
        assert len(changes) < writes
    # The last value reaches the feed with a later heartbeat that carries no progress.
    last_seen: dict[str, Any] = {}
    while any(
        last_seen.get(job_id) != writes / 1000 for job_id in leases
    ):  # heartbeats, as a worker sends them, until the feed has the latest value
        items = [{"id": job_id, **lease} for job_id, lease in leases.items()]
        assert (await client.post(HEARTBEAT, json={"leases": items}, headers=worker)).is_success
        for job_id in leases:
            changes = await progress_changes(services, job_id, revision)
            last_seen[job_id] = changes[-1]["progress"]
        await asyncio.sleep(0.1)


async def test_a_new_claim_starts_without_the_last_attempts_progress(
    client: httpx.AsyncClient, services: Services, worker: Headers
) -> None:
    [job_id] = await make_jobs(services.db)
    lease = held(await claimed(client, worker))
    assert (await beat(client, worker, job_id, lease, progress=0.9, message="almost")).is_success
    released = await client.post(f"/api/v1/jobs/{job_id}/release", json=lease, headers=worker)
    assert released.json()["progress"] == 0.9
    again = await claimed(client, worker)
    assert (again["job"]["progress"], again["job"]["progress_message"]) == (None, None)
