"""Delayed jobs and unique jobs: `run_at`, `delay_seconds`, `scheduled=`, `unique_key`."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from orchestrator.services import Services
from tests.support.users import account, admin_auth

JOBS = "/api/v1/jobs"


async def create(
    client: httpx.AsyncClient, headers: dict[str, str], **fields: Any
) -> httpx.Response:
    return await client.post(JOBS, json={"title": "a job", **fields}, headers=headers)


def at(moment: str) -> datetime:
    return datetime.fromisoformat(moment)


async def test_a_job_due_at_once_shows_no_run_at(
    client: httpx.AsyncClient, services: Services
) -> None:
    response = await create(client, admin_auth(services))
    assert response.status_code == 201
    assert response.json()["run_at"] is None
    assert response.json()["unique_key"] is None


async def test_run_at_and_delay_seconds_put_the_job_off(
    client: httpx.AsyncClient, services: Services
) -> None:
    headers = admin_auth(services)
    later = datetime.now(UTC) + timedelta(hours=2)
    response = await create(client, headers, run_at=later.isoformat().replace("+00:00", "Z"))
    assert response.status_code == 201
    assert at(response.json()["run_at"]) == later

    paris = (
        (later + timedelta(minutes=1)).astimezone(datetime.now().astimezone().tzinfo).isoformat()
    )
    response = await create(client, headers, run_at=paris)
    assert at(response.json()["run_at"]) == later + timedelta(minutes=1)

    before = datetime.now(UTC)
    response = await create(client, headers, delay_seconds=90)
    assert response.status_code == 201
    run_at = at(response.json()["run_at"])
    assert before + timedelta(seconds=90) <= run_at <= datetime.now(UTC) + timedelta(seconds=90)

    # A time already past, or no delay, is due at once.
    past = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    assert (await create(client, headers, run_at=past)).json()["run_at"] is None
    assert (await create(client, headers, delay_seconds=0)).json()["run_at"] is None


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"run_at": "2030-01-01T10:00:00"}, "run_at"),  # no offset
        ({"run_at": "2030-01-01"}, "run_at"),
        ({"run_at": "tomorrow"}, "run_at"),
        ({"run_at": 1893456000}, "run_at"),
        ({"delay_seconds": -1}, "delay_seconds"),
        ({"delay_seconds": 31_536_001}, "delay_seconds"),
        ({"delay_seconds": True}, "delay_seconds"),
        ({"delay_seconds": "10"}, "delay_seconds"),
        ({"run_at": "2030-01-01T10:00:00Z", "delay_seconds": 5}, None),
        ({"unique_key": ""}, "unique_key"),
        ({"unique_key": "k" * 201}, "unique_key"),
    ],
)
async def test_bad_times_and_keys_get_422_in_the_envelope_and_create_nothing(
    client: httpx.AsyncClient, services: Services, fields: dict[str, Any], field: str | None
) -> None:
    headers = admin_auth(services)
    response = await create(client, headers, **fields)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["type"] == "validation_error"
    if field is not None:
        assert any(field in str(detail) for detail in error["details"]), error
    assert (await client.get(JOBS, headers=headers)).json()["jobs"] == []


async def test_the_scheduled_filter_splits_waiting_jobs_from_due_ones(
    client: httpx.AsyncClient, services: Services
) -> None:
    headers = admin_auth(services)
    await create(client, headers, title="now")
    await create(client, headers, title="later", delay_seconds=3600)

    async def titles(query: str) -> list[str]:
        response = await client.get(f"{JOBS}?{query}", headers=headers)
        assert response.status_code == 200, response.text
        return [job["name"] for job in response.json()["jobs"]]

    assert await titles("status=pending&scheduled=true") == ["later"]
    assert await titles("status=pending&scheduled=false") == ["now"]
    assert await titles("status=pending") == ["now", "later"]
    bad = await client.get(f"{JOBS}?scheduled=yes", headers=headers)
    assert bad.status_code == 422
    assert bad.json()["error"]["details"][0]["field"] == "scheduled"


async def test_a_delayed_job_is_not_claimed_before_its_time(
    client: httpx.AsyncClient, services: Services
) -> None:
    headers = admin_auth(services)
    worker = await account(services, "robot", role="worker")
    job = (await create(client, headers, queue="later", delay_seconds=1.5)).json()
    claim = {"queues": ["later"]}
    assert (await client.post(f"{JOBS}/claim", json=claim, headers=worker)).status_code == 204
    # A claim that waits is handed the job once it is due, not before.
    response = await client.post(f"{JOBS}/claim", json={**claim, "wait": 10}, headers=worker)
    claimed_at = datetime.now(UTC)
    assert response.status_code == 200
    assert response.json()["job"]["id"] == job["id"]
    assert claimed_at >= at(job["run_at"])
    assert response.json()["job"]["run_at"] is None  # running: nothing to wait for


async def test_a_unique_key_refuses_a_second_unfinished_job_with_200_and_the_original(
    client: httpx.AsyncClient, services: Services
) -> None:
    headers = admin_auth(services)
    first = await create(client, headers, queue="mail", unique_key="digest:42")
    assert first.status_code == 201
    assert first.json()["unique_key"] == "digest:42"
    assert "orchestrator-duplicate-of" not in first.headers

    again = await create(client, headers, title="other title", queue="mail", unique_key="digest:42")
    assert again.status_code == 200
    assert again.headers["orchestrator-duplicate-of"] == first.json()["id"]
    assert again.headers["content-location"] == f"{JOBS}/{first.json()['id']}"
    assert "location" not in again.headers  # nothing was created
    assert again.json() == first.json()
    assert again.headers["etag"] == first.headers["etag"]

    # Another queue, or no key, is another job.
    assert (await create(client, headers, queue="other", unique_key="digest:42")).status_code == 201
    assert (await create(client, headers, queue="mail")).status_code == 201

    # Once the holder has finished, the key is free again.
    cancelled = await client.post(f"{JOBS}/{first.json()['id']}/cancel", headers=headers)
    assert cancelled.json()["status"] == "cancelled"
    third = await create(client, headers, queue="mail", unique_key="digest:42")
    assert third.status_code == 201
    assert third.json()["id"] != first.json()["id"]

    listed = (await client.get(f"{JOBS}?queue=mail", headers=headers)).json()["jobs"]
    assert len(listed) == 3


async def test_a_running_job_holds_its_key_too(
    client: httpx.AsyncClient, services: Services
) -> None:
    headers = admin_auth(services)
    worker = await account(services, "robot", role="worker")
    first = (await create(client, headers, queue="q", unique_key="k")).json()
    claimed = await client.post(f"{JOBS}/claim", json={"queues": ["q"]}, headers=worker)
    assert claimed.json()["job"]["id"] == first["id"]
    again = await create(client, headers, queue="q", unique_key="k")
    assert again.status_code == 200
    assert again.headers["orchestrator-duplicate-of"] == first["id"]
    assert again.json()["status"] == "running"
    lease = claimed.json()["lease"]
    done = await client.post(
        f"{JOBS}/{first['id']}/complete",
        json={"token": lease["token"], "secret": lease["secret"]},
        headers=worker,
    )
    assert done.status_code == 200
    assert (await create(client, headers, queue="q", unique_key="k")).status_code == 201


async def test_a_unique_key_is_not_an_idempotency_key(
    client: httpx.AsyncClient, services: Services
) -> None:
    alice = await account(services, "alice")
    bob = await account(services, "bob")
    first = await create(client, alice, unique_key="report")
    # Another user's create with the key still meets the same job: the key is the queue's.
    duplicate = await create(client, bob, unique_key="report")
    assert duplicate.status_code == 200
    assert duplicate.headers["orchestrator-duplicate-of"] == first.json()["id"]
    # A replayed request with an Idempotency-Key answers as it did the first time.
    keyed = {**bob, "Idempotency-Key": "retry-1"}
    once = await create(client, keyed, unique_key="report")
    twice = await create(client, keyed, unique_key="report")
    assert once.status_code == twice.status_code == 200
    assert twice.headers["idempotent-replayed"] == "true"
    assert twice.headers["orchestrator-duplicate-of"] == first.json()["id"]


# Far longer than any wake-up takes: a claim answered before its wait ran out was woken.
WAIT = 10.0


async def test_a_waiting_claim_is_woken_when_a_retry_backoff_ends(
    client: httpx.AsyncClient, services: Services
) -> None:
    headers = admin_auth(services)
    worker = await account(services, "robot", role="worker")
    job = (await create(client, headers, queue="again", max_attempts=2)).json()
    first = (await client.post(f"{JOBS}/claim", json={"queues": ["again"]}, headers=worker)).json()
    lease = {key: first["lease"][key] for key in ("token", "secret")}
    failed = await client.post(
        f"{JOBS}/{job['id']}/fail", json={**lease, "error": "flaky"}, headers=worker
    )
    # Back to pending with the backoff (ORCH_RETRY_BACKOFF_SECONDS, 2 s) as its run_at:
    # no change will say when it is over.
    assert failed.json()["status"] == "pending"
    run_at = at(failed.json()["run_at"])
    started = time.monotonic()
    response = await client.post(
        f"{JOBS}/claim", json={"queues": ["again"], "wait": WAIT}, headers=worker
    )
    assert response.status_code == 200
    assert response.json()["job"]["id"] == job["id"]
    assert datetime.now(UTC) >= run_at
    assert time.monotonic() - started < WAIT - 2


async def test_a_claim_waiting_before_a_retry_with_run_at_is_woken_when_it_is_due(
    client: httpx.AsyncClient, services: Services
) -> None:
    headers = admin_auth(services)
    worker = await account(services, "robot", role="worker")
    job = (await create(client, headers, queue="later")).json()
    await client.post(f"{JOBS}/{job['id']}/cancel", headers=headers)
    waiting = asyncio.create_task(
        client.post(f"{JOBS}/claim", json={"queues": ["later"], "wait": WAIT}, headers=worker)
    )
    await asyncio.sleep(0.2)  # the claim waits
    started = time.monotonic()
    # The retry's change wakes the claim while the job is not yet due: it must wait on.
    retried = await client.post(
        f"{JOBS}/{job['id']}/retry", json={"delay_seconds": 1.5}, headers=headers
    )
    run_at = at(retried.json()["run_at"])
    response = await waiting
    assert response.status_code == 200
    assert response.json()["job"]["id"] == job["id"]
    assert datetime.now(UTC) >= run_at
    assert time.monotonic() - started < WAIT - 2


async def test_times_an_offset_carries_past_year_9999_or_before_year_1_are_no_500(
    client: httpx.AsyncClient, services: Services
) -> None:
    headers = admin_auth(services)
    # 10000-01-01T23:58:59Z: read as the last instant there is.
    last = await create(client, headers, run_at="9999-12-31T23:59:59-23:59")
    assert last.status_code == 201, last.text
    assert at(last.json()["run_at"]) == datetime.max.replace(tzinfo=UTC)
    # Long past: due at once.
    first = await create(client, headers, run_at="0001-01-01T00:00:00+14:00")
    assert first.status_code == 201, first.text
    assert first.json()["run_at"] is None
    bulk = await client.post(
        f"{JOBS}/bulk",
        json={"action": "cancel", "filter": {"created_before": "0001-01-01T00:00:00+14:00"}},
        headers=headers,
    )
    assert bulk.json() == {"matched": 0, "changed": 0}


async def test_the_openapi_document_says_not_both_times_and_ids_or_filter(
    client: httpx.AsyncClient, services: Services
) -> None:
    schemas = (await client.get("/openapi.json")).json()["components"]["schemas"]
    for name in ("JobCreate", "RetryRequest"):
        assert schemas[name]["not"]["required"] == ["run_at", "delay_seconds"]
    assert [branch["required"] for branch in schemas["BulkRequest"]["oneOf"]] == [
        ["ids"],
        ["filter"],
    ]
    # A null one counts as left out, as the schema reads it too.
    headers = admin_auth(services)
    created = await create(client, headers, run_at=None, delay_seconds=60)
    assert created.status_code == 201
    bulk = await client.post(
        f"{JOBS}/bulk",
        json={"action": "cancel", "ids": None, "filter": {"queue": "default"}},
        headers=headers,
    )
    assert bulk.json() == {"matched": 1, "changed": 1}
