"""Two server processes on one PostgreSQL database: a queue's `max_running` holds across both
however many claim at once, and pausing and resuming under load loses no job."""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from orchestrator.db.migrate import upgrade
from orchestrator.queues.queries import STATUSES
from tests.changes.support import Stack, stack
from tests.support.databases import (
    create_postgres_database,
    drop_postgres_database,
    require_postgres,
)
from tests.support.jobs import make_jobs

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]
JOBS = "/api/v1/jobs"
QUEUES = "/api/v1/queues"
# Idle connections are dropped well before the servers' keep-alive (5 s) would close them
# under a request.
LIMITS = httpx.Limits(max_connections=100, keepalive_expiry=1)


@pytest.fixture
def postgres() -> None:
    require_postgres()  # before any event loop runs: it runs one of its own


@pytest.fixture
async def two(postgres: None, tmp_path: Path) -> AsyncIterator[Stack]:
    url = await create_postgres_database()
    try:
        await asyncio.to_thread(upgrade, url)
        # A busy test machine can keep a claim waiting for a capped queue's lock longer than
        # the default bound on a statement (1.5 s): what is tested here is the cap.
        async with stack(
            tmp_path,
            database_url=url,
            processes=2,
            ORCH_RATE_LIMIT_ENABLED="false",
            ORCH_DB_TIMEOUT_SECONDS="10",
        ) as running:
            yield running
    finally:
        await drop_postgres_database(url)


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def create_jobs(two: Stack, queue: str, count: int) -> set[str]:
    return set(await make_jobs(two.db, count, queue=queue))


async def settings(
    client: httpx.AsyncClient, two: Stack, token: str, queue: str, body: dict[str, Any]
) -> None:
    response = await client.patch(
        f"{two.servers[1].url}{QUEUES}/{queue}", json=body, headers=auth(token)
    )
    assert response.status_code == 200, response.text


class Claimers:
    """Clients that claim jobs of one queue through both servers, hold each a moment and
    complete it, until every job is done."""

    def __init__(self, two: Stack, token: str, queue: str, jobs: set[str]) -> None:
        self.two, self.token, self.queue, self.jobs = two, token, queue, jobs
        self.completed: Counter[str] = Counter()
        self.claimed: Counter[str] = Counter()
        # (sent, answered, jobs handed out) per claim call, on this process's clock.
        self.calls: list[tuple[float, float, int]] = []

    def done(self) -> bool:
        return self.jobs <= self.completed.keys()

    async def run(self, client: httpx.AsyncClient, n: int) -> None:
        url = self.two.servers[n % 2].url
        while not self.done():
            sent = time.monotonic()
            response = await client.post(
                f"{url}{JOBS}/claim",
                json={"queues": [self.queue], "max_jobs": 2, "wait": 1, "worker": f"c{n}"},
                headers=auth(self.token),
            )
            assert response.status_code in (200, 204), response.text
            claims = response.json()["claims"] if response.status_code == 200 else []
            self.calls.append((sent, time.monotonic(), len(claims)))
            for claim in claims:
                self.claimed[claim["job"]["id"]] += 1
                await asyncio.sleep(random.uniform(0, 0.02))  # the work
                lease = {k: claim["lease"][k] for k in ("token", "secret")}
                done = await client.post(
                    f"{url}{JOBS}/{claim['job']['id']}/complete",
                    json=lease,
                    headers=auth(self.token),
                )
                assert done.status_code == 200, done.text
                self.completed[claim["job"]["id"]] += 1


async def running_jobs(two: Stack, queue: str) -> int:
    row = await two.db.fetch_one(
        "SELECT count(*) AS n FROM jobs WHERE queue = :queue AND status = 'running'",
        {"queue": queue},
    )
    assert row is not None
    return int(row["n"])


async def test_50_claimers_on_two_processes_never_run_more_than_max_running(two: Stack) -> None:
    admin = await two.user("boss", role="admin")
    worker = await two.user("robot", role="worker")
    async with httpx.AsyncClient(timeout=60, limits=LIMITS) as client:
        jobs = await create_jobs(two, "limited", 150)
        await settings(client, two, admin, "limited", {"max_running": 3})
        claimers = Claimers(two, worker, "limited", jobs)
        samples: list[int] = []

        async def sample() -> None:
            while not claimers.done():
                samples.append(await running_jobs(two, "limited"))

        await asyncio.wait_for(
            asyncio.gather(sample(), *(claimers.run(client, n) for n in range(50))), 300
        )
        assert max(samples) <= 3
        assert max(samples) == 3  # the cap was reached, not merely never approached
        assert len(samples) > 100
        assert claimers.completed == Counter(dict.fromkeys(jobs, 1))
        queue = (await client.get(f"{two.server.url}{QUEUES}/limited", headers=auth(admin))).json()
        assert queue["counts"] == {**dict.fromkeys(STATUSES, 0), "succeeded": 150}


async def test_pausing_and_resuming_under_load_loses_no_job(two: Stack) -> None:
    admin = await two.user("boss", role="admin")
    worker = await two.user("robot", role="worker")
    async with httpx.AsyncClient(timeout=60, limits=LIMITS) as client:
        jobs = await create_jobs(two, "pausable", 200)
        claimers = Claimers(two, worker, "pausable", jobs)
        paused: list[tuple[float, float]] = []  # (pause answered, resume sent)

        async def pause_and_resume() -> None:
            while not claimers.done():
                await asyncio.sleep(0.1)
                await settings(client, two, admin, "pausable", {"paused": True})
                answered = time.monotonic()
                await asyncio.sleep(1.5)  # longer than a claim's wait
                paused.append((answered, time.monotonic()))
                await settings(client, two, admin, "pausable", {"paused": False})

        await asyncio.wait_for(
            asyncio.gather(pause_and_resume(), *(claimers.run(client, n) for n in range(20))),
            300,
        )
        assert len(paused) >= 2
        # A claim made while the queue was paused, and answered before it was resumed, got
        # nothing.
        during = [
            handed
            for sent, answered, handed in claimers.calls
            for start, end in paused
            if start <= sent and answered <= end
        ]
        assert during
        assert not any(during)
        assert claimers.claimed == Counter(dict.fromkeys(jobs, 1))
        assert claimers.completed == Counter(dict.fromkeys(jobs, 1))
        queue = (await client.get(f"{two.server.url}{QUEUES}/pausable", headers=auth(admin))).json()
        assert (queue["paused"], queue["counts"]["succeeded"], queue["counts"]["pending"]) == (
            False,
            200,
            0,
        )
