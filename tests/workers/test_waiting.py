"""Claims that wait: woken when a job comes or becomes due, and each job to one claim only."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from orchestrator.services import Services
from tests.support.jobs import make_jobs
from tests.support.users import user_headers
from tests.workers.support import Headers, claim

# Far longer than any wake-up takes: a claim answered before it was woken, not by its wait.
WAIT = 10.0


@pytest.fixture
async def worker(client: httpx.AsyncClient, services: Services) -> Headers:
    return await user_headers(client, services, "worker-1", "worker")


async def test_a_waiting_claim_gets_a_job_when_it_becomes_due(
    client: httpx.AsyncClient, services: Services, worker: Headers
) -> None:
    [job_id] = await make_jobs(services.db, queue="later", due_in=1.0)
    started = time.monotonic()
    answer = await claim(client, worker, queues=["later"], wait=WAIT)
    assert answer.status_code == 200
    assert answer.json()["job"]["id"] == job_id
    assert 0.9 <= time.monotonic() - started < WAIT - 2


async def test_a_claim_that_stops_waiting_leaves_the_due_job_to_another(
    client: httpx.AsyncClient, services: Services, worker: Headers
) -> None:
    short = asyncio.create_task(claim(client, worker, queues=["later"], wait=0.3))
    long = asyncio.create_task(claim(client, worker, queues=["later"], wait=WAIT))
    await asyncio.sleep(0.1)  # both wait
    started = time.monotonic()
    [job_id] = await make_jobs(services.db, queue="later", due_in=1.5)
    assert (await short).status_code == 204
    answer = await long
    assert answer.status_code == 200
    assert answer.json()["job"]["id"] == job_id
    assert time.monotonic() - started < WAIT - 2


async def test_each_new_job_goes_to_one_of_many_waiting_claims(
    client: httpx.AsyncClient, services: Services, worker: Headers
) -> None:
    waiting = [
        asyncio.create_task(claim(client, worker, queues=["x", "y"], wait=1.5)) for _ in range(4)
    ]
    await asyncio.sleep(0.2)
    ids = [*await make_jobs(services.db, queue="y"), *await make_jobs(services.db, queue="x")]
    answers = await asyncio.gather(*waiting)
    taken = sorted(a.json()["job"]["id"] for a in answers if a.status_code == 200)
    assert taken == sorted(ids)
    assert sorted(a.status_code for a in answers) == [200, 200, 204, 204]
