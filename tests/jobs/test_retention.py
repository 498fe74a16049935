"""Retention of finished jobs: old ones deleted in small batches, each a delete in the log."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from orchestrator.db import Database
from orchestrator.db.changelog import changes_after, latest_revision
from orchestrator.jobs.retention import job_retention, prune_finished_jobs
from orchestrator.services import Services
from tests.support.apps import client_for, running_app, services_of
from tests.support.users import admin_auth

JOBS = "/api/v1/jobs"


async def make_jobs(client: httpx.AsyncClient, headers: dict[str, str], count: int) -> list[str]:
    ids = []
    for n in range(count):
        response = await client.post(JOBS, json={"title": f"job {n}"}, headers=headers)
        assert response.status_code == 201
        ids.append(response.json()["id"])
    return ids


async def finish(db: Database, job_id: str, status: str, *, days_ago: float) -> None:
    """As if the job had finished (`status`) that long ago."""
    async with db.transaction() as tx:
        await tx.execute(
            "UPDATE jobs SET status = :status, finished_at = :at WHERE id = :id",
            {"status": status, "at": datetime.now(UTC) - timedelta(days=days_ago), "id": job_id},
        )


async def test_finished_jobs_past_the_retention_are_deleted_in_batches_each_logged(
    client: httpx.AsyncClient, services: Services
) -> None:
    headers = admin_auth(services)
    db = services.db
    old = await make_jobs(client, headers, 5)
    statuses = ["succeeded", "failed", "cancelled", "succeeded", "failed"]
    for job_id, status in zip(old, statuses, strict=True):
        await finish(db, job_id, status, days_ago=8)
    recent, pending, running = await make_jobs(client, headers, 3)
    await finish(db, recent, "succeeded", days_ago=6)
    await finish(db, running, "running", days_ago=30)  # an unfinished job is never pruned
    schedule = await client.post(
        "/api/v1/schedules",
        json={"name": "s", "cron": "@yearly", "job": {"title": "t"}},
        headers=headers,
    )
    assert schedule.status_code == 201
    revision = await latest_revision(db)

    assert await prune_finished_jobs(db, older_than=timedelta(days=7), batch=2) == 5

    listed = (await client.get(JOBS, headers=headers)).json()["jobs"]
    assert sorted(job["id"] for job in listed) == sorted([recent, pending, running])
    changes = await changes_after(db, revision=revision)
    assert sorted((c.collection, c.op, c.resource_id, c.data) for c in changes) == sorted(
        ("jobs", "delete", job_id, None) for job_id in old
    )
    assert (await client.get("/api/v1/schedules", headers=headers)).json()["schedules"] != []
    assert await prune_finished_jobs(db, older_than=timedelta(days=7)) == 0


async def test_a_retention_of_0_days_keeps_finished_jobs(
    client: httpx.AsyncClient, services: Services
) -> None:
    [job_id] = await make_jobs(client, admin_auth(services), 1)
    await finish(services.db, job_id, "succeeded", days_ago=3650)
    await job_retention(services.db, keep_days=0)()
    assert (await client.get(f"{JOBS}/{job_id}", headers=admin_auth(services))).status_code == 200


async def test_the_pruner_applies_orch_job_retention_days(tmp_path: Path) -> None:
    async with running_app(
        tmp_path, job_retention_days=2, change_prune_interval_seconds=0.1
    ) as app:
        services = services_of(app)
        async with client_for(app) as client:
            headers = admin_auth(services)
            old, young = await make_jobs(client, headers, 2)
            await finish(services.db, young, "failed", days_ago=1)
            await finish(services.db, old, "failed", days_ago=3)
            deadline = time.monotonic() + 10
            while (await client.get(f"{JOBS}/{old}", headers=headers)).status_code != 404:
                assert time.monotonic() < deadline, "the old job was not pruned within 10 s"
                await asyncio.sleep(0.05)
            assert (await client.get(f"{JOBS}/{young}", headers=headers)).status_code == 200
