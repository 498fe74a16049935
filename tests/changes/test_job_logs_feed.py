"""Job logs on the change feed: each job's lines in order with no gap, one job alone if asked;
a real server on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from websockets.asyncio.client import ClientConnection

from orchestrator.db.changelog import latest_revision
from tests.changes.support import (
    Stack,
    connected,
    first_events,
    recv_json,
    send_json,
    stack,
    ws_connect,
)
from tests.support.databases import create_postgres_database, drop_postgres_database

pytestmark = pytest.mark.e2e

CALLS = 25  # per writer
WRITERS = 2  # per job, at once
LINES = 7  # per call
PER_JOB = CALLS * WRITERS * LINES


@pytest.fixture
async def feed_stack(backend: str, tmp_path: Path) -> AsyncIterator[Stack]:
    url = await create_postgres_database() if backend == "postgres" else None
    try:
        async with stack(tmp_path, database_url=url) as running:
            yield running
    finally:
        if url is not None:
            await drop_postgres_database(url)


async def lines_of(ws: ClientConnection, count: int) -> list[tuple[str, int, str]]:
    """(job id, n, line) of each line the socket's changes carry, until `count` of them."""
    seen: list[tuple[str, int, str]] = []
    async with asyncio.timeout(60):
        while len(seen) < count:
            frame = await recv_json(ws, 60)
            assert frame["type"] == "change", frame
            assert frame["collection"] == "job_logs"
            assert frame["op"] == "create"
            data = frame["data"]
            assert data["job_id"] == frame["id"]
            seen.extend((frame["id"], item["n"], item["line"]) for item in data["lines"])
    return seen


async def test_each_jobs_lines_reach_subscribers_in_order_with_no_gap(feed_stack: Stack) -> None:
    base = feed_stack.server.url
    member = {"Authorization": f"Bearer {await feed_stack.user('maker')}"}
    worker = {"Authorization": f"Bearer {await feed_stack.user('runner', 'worker')}"}
    viewer = await feed_stack.user(f"v{uuid.uuid4().hex[:8]}", "viewer")
    async with httpx.AsyncClient(timeout=30) as client:
        for title in ("a", "b"):
            created = await client.post(
                f"{base}/api/v1/jobs", json={"title": title}, headers=member
            )
            assert created.status_code == 201
        answer = await client.post(
            f"{base}/api/v1/jobs/claim", json={"max_jobs": 2}, headers=worker
        )
        claims = answer.json()["claims"]
        assert len(claims) == 2
        first, second = (claim["job"]["id"] for claim in claims)
        since = await latest_revision(feed_stack.db)

        async with (
            ws_connect(feed_stack.server, viewer) as one,
            ws_connect(feed_stack.server, viewer) as every,
        ):
            await connected(one)
            await connected(every)
            await send_json(
                one, {"type": "subscribe", "collections": ["job_logs"], "job": first.upper()}
            )
            ack = await recv_json(one)
            assert (ack["type"], ack["job"], ack["collections"]) == (
                "subscribed",
                first,
                ["job_logs"],
            )
            await send_json(every, {"type": "subscribe", "collections": ["job_logs"]})
            assert (await recv_json(every))["type"] == "subscribed"

            async def write(claim: dict[str, Any], writer: int) -> None:
                lease = {"token": claim["lease"]["token"], "secret": claim["lease"]["secret"]}
                url = f"{base}/api/v1/jobs/{claim['job']['id']}/logs"
                for call in range(CALLS):
                    lines = [f"w{writer} c{call} l{k}" for k in range(LINES)]
                    response = await client.post(
                        url, json={**lease, "lines": lines}, headers=worker
                    )
                    assert response.status_code == 200, response.text

            await asyncio.gather(
                *(write(claim, writer) for claim in claims for writer in range(WRITERS))
            )

            alone = await lines_of(one, PER_JOB)
            assert {job for job, _, _ in alone} == {first}
            assert [n for _, n, _ in alone] == list(range(1, PER_JOB + 1))
            both = await lines_of(every, 2 * PER_JOB)
            for job in (first, second):
                numbers = [n for owner, n, _ in both if owner == job]
                assert numbers == list(range(1, PER_JOB + 1))

        # What the feed carried is what the job keeps, line for line.
        stored = await client.get(
            f"{base}/api/v1/jobs/{first}/logs?limit=1000",
            headers={"Authorization": f"Bearer {viewer}"},
        )
        assert [(i["n"], i["line"]) for i in stored.json()["items"]] == [
            (n, line) for _, n, line in alone
        ]
        # Each writer's own lines kept their order.
        for writer in range(WRITERS):
            mine = [line for _, _, line in alone if line.startswith(f"w{writer} ")]
            assert mine == [f"w{writer} c{c} l{k}" for c in range(CALLS) for k in range(LINES)]

        # SSE follows one job too, replaying from a revision.
        events = await first_events(
            client,
            f"{base}/api/v1/changes?collections=job_logs&job={second}&since={since}",
            {"Authorization": f"Bearer {viewer}"},
            1 + CALLS * WRITERS,
        )
        assert events[0]["event"] == "subscribed"
        replayed = [orjson.loads(event["data"]) for event in events[1:]]
        assert {frame["id"] for frame in replayed} == {second}
        numbers = [item["n"] for frame in replayed for item in frame["data"]["lines"]]
        assert numbers == list(range(1, PER_JOB + 1))


async def test_a_job_filter_is_refused_for_other_collections_or_ids(feed_stack: Stack) -> None:
    viewer = await feed_stack.user(f"v{uuid.uuid4().hex[:8]}", "viewer")
    job = str(uuid.uuid4())
    async with ws_connect(feed_stack.server, viewer) as ws:
        await connected(ws)
        for command in (
            {"collections": ["job_logs", "tasks"], "job": job},
            {"job": job},  # the default collections include tasks
            {"collections": ["job_logs"], "job": "not-a-uuid"},
            {"collections": ["job_logs"], "job": 7},
        ):
            await send_json(ws, {"type": "subscribe", **command})
            answer = await recv_json(ws)
            assert (answer["type"], answer["code"]) == ("error", "invalid_command"), command
        await send_json(ws, {"type": "subscribe", "collections": ["jobs", "job_logs"], "job": job})
        assert (await recv_json(ws))["job"] == job
    headers = {"Authorization": f"Bearer {viewer}"}
    async with httpx.AsyncClient(timeout=10) as client:
        url = f"{feed_stack.server.url}/api/v1/changes"
        for query in (f"job={job}", f"collections=tasks&job={job}", "collections=job_logs&job=x"):
            response = await client.get(f"{url}?{query}", headers=headers)
            assert response.status_code == 422, query
            assert response.json()["error"]["code"] == 422
