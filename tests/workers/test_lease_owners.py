"""A lease belongs to the account that claimed it and carries a secret; cancel is for the job's
creator or an admin, as delete is. On both backends."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from orchestrator.services import Services
from tests.support.jobs import make_jobs
from tests.support.users import admin_headers, user_headers
from tests.workers.support import Headers, claimed, held, job_row

CALLS: dict[str, dict[str, Any]] = {
    "heartbeat": {"lease_seconds": 60},
    "complete": {"result": "forged"},
    "fail": {"error": "forged", "retry": False},
    "release": {},
}


@pytest.fixture
async def owner(client: httpx.AsyncClient, services: Services) -> Headers:
    return await user_headers(client, services, "worker-a", "worker")


@pytest.fixture
async def intruder(client: httpx.AsyncClient, services: Services) -> Headers:
    return await user_headers(client, services, "worker-b", "worker")


async def test_another_account_cannot_use_a_lease_even_with_its_token_and_secret(
    client: httpx.AsyncClient, services: Services, owner: Headers, intruder: Headers
) -> None:
    [job_id] = await make_jobs(services.db)
    lease = held(await claimed(client, owner))
    before = await job_row(services, job_id)
    for call, extra in CALLS.items():
        url = f"/api/v1/jobs/{job_id}/{call}"
        refused = await client.post(url, json={**lease, **extra}, headers=intruder)
        assert refused.status_code == 403, (call, refused.text)
        assert refused.json()["error"]["code"] == 403
        batch = await client.post(
            "/api/v1/jobs/report",
            json={"complete": [{"id": job_id, **lease, "result": "forged"}]},
            headers=intruder,
        )
        assert batch.json()["complete"][0]["code"] == 403
    assert await job_row(services, job_id) == before
    # The account that claimed it can; so can an admin who has the lease.
    beat = await client.post(f"/api/v1/jobs/{job_id}/heartbeat", json=lease, headers=owner)
    assert beat.status_code == 200
    done = await client.post(
        f"/api/v1/jobs/{job_id}/complete",
        json={**lease, "result": "admin"},
        headers=await admin_headers(client),
    )
    assert done.status_code == 200
    assert done.json()["result"] == "admin"


async def test_the_token_alone_is_not_enough_and_a_wrong_secret_is_409(
    client: httpx.AsyncClient, services: Services, owner: Headers
) -> None:
    [job_id] = await make_jobs(services.db)
    answer = await claimed(client, owner)
    secret = answer["lease"]["secret"]
    assert len(secret) >= 22  # at least 128 bits in base64
    token = answer["lease"]["token"]
    before = await job_row(services, job_id)
    for call, extra in CALLS.items():
        url = f"/api/v1/jobs/{job_id}/{call}"
        bare = await client.post(url, json={"token": token, **extra}, headers=owner)
        assert bare.status_code == 422, call
        for guess in ("", "0" * len(secret), secret[:-1] + ("A" if secret[-1] != "A" else "B")):
            wrong = await client.post(
                url, json={"token": token, "secret": guess, **extra}, headers=owner
            )
            assert wrong.status_code == (422 if guess == "" else 409), (call, guess)
    assert await job_row(services, job_id) == before


async def test_cancel_is_for_the_creator_or_an_admin(
    client: httpx.AsyncClient, services: Services, owner: Headers
) -> None:
    creator = await user_headers(client, services, "creator", "member")
    other = await user_headers(client, services, "someone-else", "member")
    running, pending = await make_jobs(services.db, 2, created_by="creator")
    assert (await claimed(client, owner))["job"]["id"] == running
    for job_id in (pending, running):
        before = await job_row(services, job_id)
        refused = await client.post(f"/api/v1/jobs/{job_id}/cancel", headers=other)
        assert refused.status_code == 403, refused.text
        assert refused.json()["error"]["code"] == 403
        assert await job_row(services, job_id) == before
    assert (await client.post(f"/api/v1/jobs/{running}/cancel", headers=creator)).status_code == 202
    admin = await admin_headers(client)
    assert (await client.post(f"/api/v1/jobs/{pending}/cancel", headers=admin)).status_code == 200
