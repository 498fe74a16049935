"""Two server processes on one PostgreSQL database: unique keys, schedules and delayed jobs
hold whichever process a request lands on."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from orchestrator.db.changelog import latest_revision
from orchestrator.db.migrate import upgrade
from tests.changes.support import (
    Stack,
    connected,
    first_events,
    recv_json,
    stack,
    subscribe,
    ws_connect,
)
from tests.support.databases import (
    create_postgres_database,
    drop_postgres_database,
    require_postgres,
)

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]
JOBS = "/api/v1/jobs"


@pytest.fixture
def postgres() -> None:
    require_postgres()  # before any event loop runs: it runs one of its own


@pytest.fixture
async def two(postgres: None, tmp_path: Path) -> AsyncIterator[Stack]:
    url = await create_postgres_database()
    try:
        await asyncio.to_thread(upgrade, url)
        async with stack(tmp_path, database_url=url, processes=2) as running:
            yield running
    finally:
        await drop_postgres_database(url)


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def jobs_of(client: httpx.AsyncClient, url: str, token: str, queue: str) -> Any:
    response = await client.get(f"{url}{JOBS}?queue={queue}", headers=auth(token))
    assert response.status_code == 200
    return response.json()["jobs"]


async def test_200_concurrent_creates_with_one_unique_key_make_one_job(two: Stack) -> None:
    token = await two.user("creator")
    gate = asyncio.Semaphore(40)

    async def create(client: httpx.AsyncClient, n: int) -> httpx.Response:
        async with gate:
            return await client.post(
                f"{two.servers[n % 2].url}{JOBS}",
                json={"title": f"attempt {n}", "queue": "race", "unique_key": "only-one"},
                headers=auth(token),
            )

    async with httpx.AsyncClient(timeout=30) as client:
        answers = await asyncio.gather(*(create(client, n) for n in range(200)))
        assert Counter(a.status_code for a in answers) == {201: 1, 200: 199}
        created = next(a for a in answers if a.status_code == 201).json()
        assert {
            a.headers["orchestrator-duplicate-of"] for a in answers if a.status_code == 200
        } == {created["id"]}
        assert [job["id"] for job in await jobs_of(client, two.server.url, token, "race")] == [
            created["id"]
        ]


async def test_a_delayed_job_is_never_claimed_early(two: Stack) -> None:
    token = await two.user("creator")
    worker = await two.user("robot", role="worker")
    async with httpx.AsyncClient(timeout=30) as client:
        for n in range(10):
            response = await client.post(
                f"{two.servers[n % 2].url}{JOBS}",
                json={"title": f"later {n}", "queue": "later", "delay_seconds": 0.5 + n / 10},
                headers=auth(token),
            )
            assert response.status_code == 201

        async def claim_all(server: int) -> list[dict[str, Any]]:
            taken: list[dict[str, Any]] = []
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                response = await client.post(
                    f"{two.servers[server].url}{JOBS}/claim",
                    json={"queues": ["later"], "wait": 2},
                    headers=auth(worker),
                )
                if response.status_code == 204:
                    listed = await jobs_of(client, two.server.url, token, "later")
                    if all(job["status"] != "pending" for job in listed):
                        return taken
                    continue
                taken.append(response.json()["job"])
            return taken

        claims = [
            job for batch in await asyncio.gather(claim_all(0), claim_all(1)) for job in batch
        ]
        assert len(claims) == 10
        created = {job["id"]: job for job in await jobs_of(client, two.server.url, token, "later")}
        for job in claims:
            run_at = datetime.fromisoformat(created[job["id"]]["run_at"] or job["created_at"])
            # started_at is the database's clock at the claim, run_at the time asked for.
            assert datetime.fromisoformat(job["started_at"]) >= run_at


async def test_a_schedule_firing_every_second_for_30_s_makes_exactly_30_jobs(two: Stack) -> None:
    token = await two.user("planner")
    async with httpx.AsyncClient(timeout=30) as client:
        response = await client.post(
            f"{two.server.url}/api/v1/schedules",
            json={
                "name": "every second",
                "cron": "* * * * * *",
                "timezone": "UTC",
                "job": {"title": "tick", "queue": "ticks"},
            },
            headers=auth(token),
        )
        assert response.status_code == 201, response.text
        schedule = response.json()
        deadline = time.monotonic() + 45
        jobs: list[dict[str, Any]] = []
        while time.monotonic() < deadline and len(jobs) < 31:
            await asyncio.sleep(0.5)
            jobs = await jobs_of(client, two.servers[1].url, token, "ticks")
        current = await client.get(
            f"{two.server.url}/api/v1/schedules/{schedule['id']}", headers=auth(token)
        )
        disabled = await client.patch(
            f"{two.server.url}/api/v1/schedules/{schedule['id']}",
            json={"enabled": False},
            headers={**auth(token), "If-Match": "*"},
        )
        assert disabled.status_code == 200, disabled.text
        assert disabled.json()["next_run_at"] is None
        jobs = await jobs_of(client, two.servers[1].url, token, "ticks")
    assert current.status_code == 200

    prefix = f"schedule:{schedule['id']}:"
    keys = [job["unique_key"] for job in jobs]
    assert all(key.startswith(prefix) for key in keys)
    assert len(keys) == len(set(keys)), "a fire time made two jobs"
    fires = sorted(datetime.fromisoformat(key.removeprefix(prefix)) for key in keys)
    first = fires[0]
    # The first 30 seconds of firing: one job for each, none missed, none twice.
    window = [fire for fire in fires if fire < first + timedelta(seconds=30)]
    assert window == [first + timedelta(seconds=n) for n in range(30)]
    # Every fire after those too: consecutive seconds to the last one.
    assert fires == [first + timedelta(seconds=n) for n in range(len(fires))]
    by_key = {job["unique_key"]: job for job in jobs}
    for fire in window:
        created = datetime.fromisoformat(by_key[f"{prefix}{fire:%Y-%m-%dT%H:%M:%SZ}"]["created_at"])
        assert timedelta(0) <= created - fire < timedelta(seconds=1), "not punctual"


async def test_a_fire_on_either_process_reaches_ws_and_sse_subscribers_of_the_other(
    two: Stack,
) -> None:
    token = await two.user("planner")
    since = await latest_revision(two.db)
    writer, reader = two.servers
    async with ws_connect(reader, token) as ws, httpx.AsyncClient(timeout=30) as client:
        await connected(ws)
        assert (await subscribe(ws, ["schedules"], since=since))["type"] == "subscribed"
        created = await client.post(
            f"{writer.url}/api/v1/schedules",
            json={
                "name": "every second",
                "cron": "* * * * * *",
                "timezone": "UTC",
                "job": {"title": "tick", "queue": "feed"},
            },
            headers=auth(token),
        )
        assert created.status_code == 201, created.text
        schedule_id = created.json()["id"]
        create, fire = await recv_json(ws, 10), await recv_json(ws, 10)
        assert (create["type"], fire["type"]) == ("change", "change")
        assert (create["op"], create["id"], create["data"]) == (
            "create",
            schedule_id,
            created.json(),
        )
        # A fire, by whichever process won it: the schedule with its new job.
        assert (fire["collection"], fire["op"], fire["id"]) == ("schedules", "update", schedule_id)
        assert fire["data"]["last_job_id"] is not None

        events = await first_events(
            client,
            f"{reader.url}/api/v1/changes?collections=schedules&since={since}",
            auth(token),
            3,
        )
        changes = [orjson.loads(event["data"]) for event in events[1:]]
        assert [(c["op"], c["id"]) for c in changes] == [
            ("create", schedule_id),
            ("update", schedule_id),
        ]
