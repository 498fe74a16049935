"""Claims, leases and transitions over HTTP, on both backends."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import orjson
import pytest

from orchestrator.db.changelog import changes_after
from orchestrator.services import Services
from tests.support.jobs import make_jobs
from tests.support.users import admin_headers, user_headers
from tests.workers.support import Headers, claim, claimed, forged, held, job_row


@pytest.fixture
async def worker(client: httpx.AsyncClient, services: Services) -> Headers:
    return await user_headers(client, services, "worker-1", "worker")


async def eventually(check: Callable[[], Awaitable[bool]], within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not await check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def _claim_takes_a_job_with_a_lease_from_the_database_clock(
    client: httpx.AsyncClient, services: Services, worker: Headers
) -> None:
    [job_id] = await make_jobs(services.db, payload={"n": 1})
    before = time.time()
    answer = await claimed(client, worker, lease_seconds=30, worker="w1")
    assert answer["job"]["id"] == job_id
    assert answer["job"]["status"] == "running"
    assert answer["job"]["attempts"] == 1
    assert answer["job"]["payload"] == {"n": 1}
    lease = answer["lease"]
    assert lease["token"] == 1
    assert lease["expires_at"].endswith("+00:00")
    from datetime import datetime

    expires = datetime.fromisoformat(lease["expires_at"]).timestamp()
    assert before + 29 < expires < time.time() + 31
    assert (await claim(client, worker)).status_code == 204


async def _claim_needs_the_worker_role(client: httpx.AsyncClient, services: Services) -> None:
    member = await user_headers(client, services, "m", "member")
    assert (await claim(client, member)).status_code == 403
    assert (await claim(client, await admin_headers(client))).status_code == 204
    assert (await client.post("/api/v1/jobs/claim", json={})).status_code == 401


async def _bad_claims_get_422(client: httpx.AsyncClient, worker: Headers) -> None:
    bodies: list[dict[str, Any]] = [
        {"queues": ["default"], "wait": 31},
        {"queues": []},
        {"queues": ["default"], "lease_seconds": 0},
        {"queues": ["default"], "surprise": 1},
    ]
    for body in bodies:
        response = await client.post("/api/v1/jobs/claim", json=body, headers=worker)
        assert response.status_code == 422
        assert response.json()["error"]["code"] == 422


async def _highest_priority_then_oldest_first_and_only_listed_queues(
    client: httpx.AsyncClient, services: Services, worker: Headers
) -> None:
    [old_low] = await make_jobs(services.db, priority=0)
    [high] = await make_jobs(services.db, priority=5)
    [new_low] = await make_jobs(services.db, priority=0)
    [other] = await make_jobs(services.db, queue="other", priority=9)
    order = [(await claimed(client, worker))["job"]["id"] for _ in range(3)]
    assert order == [high, old_low, new_low]
    assert (await claimed(client, worker, queues=["other"]))["job"]["id"] == other


async def _concurrent_claims_never_share_a_job(
    client: httpx.AsyncClient, services: Services, worker: Headers
) -> None:
    ids = await make_jobs(services.db, 20)
    answers = await asyncio.gather(*(claim(client, worker) for _ in range(30)))
    taken = [a.json()["job"]["id"] for a in answers if a.status_code == 200]
    others = [(a.status_code, a.text[:300]) for a in answers if a.status_code not in (200, 204)]
    assert sorted(taken) == sorted(ids), others
    assert sum(a.status_code == 204 for a in answers) == 10


async def _a_waiting_claim_is_woken_by_a_new_job(
    client: httpx.AsyncClient, services: Services, worker: Headers
) -> None:
    started = time.monotonic()
    waiting = asyncio.create_task(claim(client, worker, wait=20))
    await asyncio.sleep(0.3)  # let the claim find nothing and start waiting
    assert not waiting.done()
    [job_id] = await make_jobs(services.db)
    response = await waiting
    assert response.status_code == 200
    assert response.json()["job"]["id"] == job_id
    assert time.monotonic() - started < 10


async def _an_empty_wait_ends_with_204_after_the_wait(
    client: httpx.AsyncClient, worker: Headers
) -> None:
    started = time.monotonic()
    assert (await claim(client, worker, wait=0.5)).status_code == 204
    assert time.monotonic() - started >= 0.5


async def _heartbeat_extends_the_lease_and_stale_tokens_get_409(
    client: httpx.AsyncClient, services: Services, worker: Headers
) -> None:
    [job_id] = await make_jobs(services.db)
    answer = await claimed(client, worker, lease_seconds=5)
    lease = answer["lease"]
    beat = await client.post(
        f"/api/v1/jobs/{job_id}/heartbeat",
        json={**held(answer), "lease_seconds": 60},
        headers=worker,
    )
    assert beat.status_code == 200
    assert beat.json()["cancel_requested"] is False
    assert beat.json()["lease"]["expires_at"] > lease["expires_at"]
    before = await job_row(services, job_id)
    stale = await client.post(
        f"/api/v1/jobs/{job_id}/heartbeat", json=forged(services, job_id, 99), headers=worker
    )
    assert stale.status_code == 409
    assert stale.json()["error"]["code"] == 409
    assert await job_row(services, job_id) == before
    # Not a token at all (found by the long fuzzing run: a token over 64 bits was a 500).
    for call in ("heartbeat", "complete", "fail", "release"):
        for token in (2**53, 2**63, 10**30, 2.0**60, True, -1, 1.5, "1"):
            bad = await client.post(
                f"/api/v1/jobs/{job_id}/{call}",
                json={"token": token, "secret": lease["secret"]},
                headers=worker,
            )
            assert bad.status_code == 422, (call, token, bad.text)
            assert bad.json()["error"]["code"] == 422
    assert await job_row(services, job_id) == before
    # JSON does not tell 4 from 4.0: an integral number is the token.
    beat = await client.post(
        f"/api/v1/jobs/{job_id}/heartbeat",
        json={"token": float(lease["token"]), "secret": lease["secret"]},
        headers=worker,
    )
    assert beat.status_code == 200


async def _complete_records_the_result_once_and_repeats_answer_the_same(
    client: httpx.AsyncClient, services: Services, worker: Headers
) -> None:
    [job_id] = await make_jobs(services.db)
    lease = held(await claimed(client, worker))
    token = lease["token"]
    url = f"/api/v1/jobs/{job_id}/complete"
    first = await client.post(url, json={**lease, "result": {"ok": 1}}, headers=worker)
    assert first.status_code == 200
    assert first.json()["status"] == "succeeded"
    assert first.json()["result"] == {"ok": 1}
    again = await client.post(url, json={**lease, "result": {"ok": 2}}, headers=worker)
    assert again.status_code == 200
    assert again.json() == first.json()
    stale = await client.post(
        url, json={**forged(services, job_id, token - 1), "result": 3}, headers=worker
    )
    assert stale.status_code == 409


async def _a_lease_taken_over_fences_off_the_first_worker(
    client: httpx.AsyncClient, services: Services, worker: Headers
) -> None:
    [job_id] = await make_jobs(services.db)
    first = held(await claimed(client, worker, lease_seconds=1))

    async def back_to_pending() -> bool:
        return str((await job_row(services, job_id))["status"]) == "pending"

    await eventually(back_to_pending)
    second = held(await claimed(client, worker, lease_seconds=30))
    assert second["token"] > first["token"]
    assert second["secret"] != first["secret"]
    beat = await client.post(f"/api/v1/jobs/{job_id}/heartbeat", json=first, headers=worker)
    assert beat.status_code == 409
    late = await client.post(
        f"/api/v1/jobs/{job_id}/complete", json={**first, "result": "A"}, headers=worker
    )
    assert late.status_code == 409
    done = await client.post(
        f"/api/v1/jobs/{job_id}/complete", json={**second, "result": "B"}, headers=worker
    )
    assert done.json()["result"] == "B"
    assert done.json()["attempts"] == 2


async def test_failures_retry_after_backoff_until_max_attempts(
    client: httpx.AsyncClient, services: Services, worker: Headers
) -> None:
    [job_id] = await make_jobs(services.db, max_attempts=3)
    claimed_at: list[float] = []
    for attempt in (1, 2, 3):
        answer = await claimed(client, worker, wait=10)
        claimed_at.append(time.monotonic())
        assert answer["job"]["attempts"] == attempt
        failed = await client.post(
            f"/api/v1/jobs/{job_id}/fail",
            json={**held(answer), "error": f"boom {attempt}"},
            headers=worker,
        )
        assert failed.status_code == 200
        expected = "pending" if attempt < 3 else "failed"
        assert failed.json()["status"] == expected
        assert failed.json()["error"] == f"boom {attempt}"
        if attempt < 3:  # not due yet: the backoff holds it back
            assert (await claim(client, worker)).status_code == 204
    assert failed.json()["finished_at"] is not None
    # backoff 0.2 s then 0.4 s (the claim waits, woken when the job is due)
    assert claimed_at[1] - claimed_at[0] >= 0.2
    assert claimed_at[2] - claimed_at[1] >= 0.4


async def _fail_without_retry_fails_at_once(
    client: httpx.AsyncClient, services: Services, worker: Headers
) -> None:
    [job_id] = await make_jobs(services.db, max_attempts=5)
    lease = held(await claimed(client, worker))
    answer = await client.post(
        f"/api/v1/jobs/{job_id}/fail",
        json={**lease, "error": "bad input", "retry": False},
        headers=worker,
    )
    assert answer.json()["status"] == "failed"
    assert answer.json()["attempts"] == 1


async def _expired_leases_return_to_pending_or_fail_when_no_attempts_are_left(
    client: httpx.AsyncClient, services: Services, worker: Headers
) -> None:
    [job_id] = await make_jobs(services.db, max_attempts=2)
    for attempt, status in ((1, "pending"), (2, "failed")):
        answer = await claimed(client, worker, lease_seconds=1, wait=10)
        assert answer["job"]["attempts"] == attempt

        async def swept(status: str = status) -> bool:
            return str((await job_row(services, job_id))["status"]) == status

        await eventually(swept)
    row = await job_row(services, job_id)
    assert row["attempts"] == 2
    assert row["error"] == "lease expired"


async def _release_gives_the_job_back_without_counting_the_attempt(
    client: httpx.AsyncClient, services: Services, worker: Headers
) -> None:
    [job_id] = await make_jobs(services.db)
    lease = held(await claimed(client, worker))
    answer = await client.post(f"/api/v1/jobs/{job_id}/release", json=lease, headers=worker)
    assert answer.json()["status"] == "pending"
    assert answer.json()["attempts"] == 0
    assert (await claimed(client, worker))["lease"]["token"] == lease["token"] + 1


async def _cancel_pending_running_and_finished_jobs(
    client: httpx.AsyncClient, services: Services, worker: Headers
) -> None:
    member = await user_headers(client, services, "member-1", "member")
    [pending] = await make_jobs(services.db, queue="a", created_by="member-1")
    answer = await client.post(f"/api/v1/jobs/{pending}/cancel", headers=member)
    assert answer.status_code == 200
    assert answer.json()["status"] == "cancelled"
    assert (await claim(client, worker, queues=["a"])).status_code == 204
    again = await client.post(f"/api/v1/jobs/{pending}/cancel", headers=member)
    assert again.status_code == 409

    [running] = await make_jobs(services.db, queue="b", created_by="member-1")
    lease = held(await claimed(client, worker, queues=["b"]))
    requested = await client.post(f"/api/v1/jobs/{running}/cancel", headers=member)
    assert requested.status_code == 202
    assert requested.json()["status"] == "running"
    assert requested.json()["cancel_requested"] is True
    beat = await client.post(f"/api/v1/jobs/{running}/heartbeat", json=lease, headers=worker)
    assert beat.json()["cancel_requested"] is True
    stopped = await client.post(
        f"/api/v1/jobs/{running}/fail", json={**lease, "error": "stopped"}, headers=worker
    )
    assert stopped.json()["status"] == "cancelled"

    viewer = await user_headers(client, services, "viewer-1", "viewer")
    assert (await client.post(f"/api/v1/jobs/{running}/cancel", headers=viewer)).status_code == 403
    missing = "00000000-0000-4000-8000-000000000000"
    assert (await client.post(f"/api/v1/jobs/{missing}/cancel", headers=member)).status_code == 404


async def _a_running_job_whose_worker_is_silent_is_cancelled_at_lease_expiry(
    client: httpx.AsyncClient, services: Services, worker: Headers
) -> None:
    member = await user_headers(client, services, "member-1", "member")
    [job_id] = await make_jobs(services.db, created_by="member-1")
    await claimed(client, worker, lease_seconds=1)
    assert (await client.post(f"/api/v1/jobs/{job_id}/cancel", headers=member)).status_code == 202

    async def cancelled() -> bool:
        return str((await job_row(services, job_id))["status"]) == "cancelled"

    await eventually(cancelled)


async def _illegal_transitions_get_409_and_change_nothing(
    client: httpx.AsyncClient, services: Services, worker: Headers
) -> None:
    [job_id] = await make_jobs(services.db)
    before = await job_row(services, job_id)
    never = forged(services, job_id, 0)
    for verb, body in (
        ("heartbeat", never),
        ("complete", {**never, "result": 1}),
        ("fail", {**never, "error": "x"}),
        ("release", never),
    ):
        answer = await client.post(f"/api/v1/jobs/{job_id}/{verb}", json=body, headers=worker)
        assert answer.status_code == 409, verb
        assert answer.json()["error"]["type"] == "http_exception"
    assert await job_row(services, job_id) == before
    lease = held(await claimed(client, worker))
    url = f"/api/v1/jobs/{job_id}"
    await client.post(f"{url}/complete", json={**lease, "result": 1}, headers=worker)
    for verb in ("heartbeat", "fail", "release"):
        answer = await client.post(f"{url}/{verb}", json=lease, headers=worker)
        assert answer.status_code == 409, verb
    bad_id = await client.post("/api/v1/jobs/nope/complete", json=lease, headers=worker)
    assert bad_id.status_code == 404


async def _every_transition_is_in_the_change_log_in_order(
    client: httpx.AsyncClient, services: Services, worker: Headers
) -> None:
    start = (await changes_after(services.db, revision=0))[-1].revision
    [job_id] = await make_jobs(services.db, max_attempts=2)
    lease = held(await claimed(client, worker))
    url = f"/api/v1/jobs/{job_id}"
    await client.post(f"{url}/fail", json={**lease, "error": "x"}, headers=worker)
    lease = held(await claimed(client, worker, wait=10))
    await client.post(f"{url}/complete", json={**lease, "result": 7}, headers=worker)
    changes = [
        c for c in await changes_after(services.db, revision=start) if c.resource_id == job_id
    ]
    bodies = [orjson.loads(c.data or "null") for c in changes]
    assert [b["status"] for b in bodies] == [
        "pending",
        "running",
        "pending",
        "running",
        "succeeded",
    ]
    assert [b["version"] for b in bodies] == [1, 2, 3, 4, 5]
    assert bodies[-1]["result"] == 7


async def test_claiming(client: httpx.AsyncClient, services: Services, worker: Headers) -> None:
    await _claim_takes_a_job_with_a_lease_from_the_database_clock(client, services, worker)
    await _claim_needs_the_worker_role(client, services)
    await _bad_claims_get_422(client, worker)
    await _highest_priority_then_oldest_first_and_only_listed_queues(client, services, worker)
    await _concurrent_claims_never_share_a_job(client, services, worker)


async def test_waiting_claims(
    client: httpx.AsyncClient, services: Services, worker: Headers
) -> None:
    await _a_waiting_claim_is_woken_by_a_new_job(client, services, worker)
    await _an_empty_wait_ends_with_204_after_the_wait(client, worker)


async def test_holding_a_lease(
    client: httpx.AsyncClient, services: Services, worker: Headers
) -> None:
    await _heartbeat_extends_the_lease_and_stale_tokens_get_409(client, services, worker)
    await _complete_records_the_result_once_and_repeats_answer_the_same(client, services, worker)
    await _release_gives_the_job_back_without_counting_the_attempt(client, services, worker)
    await _fail_without_retry_fails_at_once(client, services, worker)


async def test_expiry(client: httpx.AsyncClient, services: Services, worker: Headers) -> None:
    await _a_lease_taken_over_fences_off_the_first_worker(client, services, worker)
    await _expired_leases_return_to_pending_or_fail_when_no_attempts_are_left(
        client, services, worker
    )
    await _a_running_job_whose_worker_is_silent_is_cancelled_at_lease_expiry(
        client, services, worker
    )


async def test_transitions(client: httpx.AsyncClient, services: Services, worker: Headers) -> None:
    await _cancel_pending_running_and_finished_jobs(client, services, worker)
    await _illegal_transitions_get_409_and_change_nothing(client, services, worker)
    await _every_transition_is_in_the_change_log_in_order(client, services, worker)
