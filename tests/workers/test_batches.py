"""Several jobs per call: batched claims, complete-and-claim, batched heartbeats and reports,
and fencing that refuses only the stale lease of a batch; on both backends."""

from __future__ import annotations

from typing import Any

import httpx
import orjson
import pytest

from orchestrator.db.changelog import changes_after, latest_revision
from orchestrator.services import Services
from tests.support.jobs import make_jobs
from tests.support.users import admin_headers, user_headers
from tests.workers.support import Headers, forged, job_row

CLAIM = "/api/v1/jobs/claim"
REPORT = "/api/v1/jobs/report"
HEARTBEAT = "/api/v1/jobs/heartbeat"


@pytest.fixture
async def worker(client: httpx.AsyncClient, services: Services) -> Headers:
    return await user_headers(client, services, "worker-1", "worker")


def lease_of(claim: dict[str, Any]) -> dict[str, Any]:
    """A claim as a batch item names it: the job's id, the token and the secret."""
    return {"id": claim["job"]["id"], **{k: claim["lease"][k] for k in ("token", "secret")}}


async def claim_many(
    client: httpx.AsyncClient, headers: Headers, max_jobs: int, **body: Any
) -> list[dict[str, Any]]:
    response = await client.post(
        CLAIM, json={"queues": ["default"], "max_jobs": max_jobs, **body}, headers=headers
    )
    if response.status_code == 204:
        return []
    assert response.status_code == 200, response.text
    claims: list[dict[str, Any]] = response.json()["claims"]
    return claims


async def test_a_batched_claim_takes_up_to_max_jobs_in_claim_order_each_with_its_own_lease(
    client: httpx.AsyncClient, services: Services, worker: Headers
) -> None:
    low = await make_jobs(services.db, 3, priority=0)
    [high] = await make_jobs(services.db, priority=5)
    await make_jobs(services.db, 2, queue="other")
    claims = await claim_many(client, worker, 3)
    assert [c["job"]["id"] for c in claims] == [high, *low[:2]]
    assert all(c["job"]["status"] == "running" for c in claims)
    assert len({c["lease"]["secret"] for c in claims}) == 3
    assert all(c["lease"]["token"] == 1 for c in claims)
    # The rest of the queue, then nothing: 204 as for a single claim.
    assert [c["job"]["id"] for c in await claim_many(client, worker, 100)] == low[2:]
    assert await claim_many(client, worker, 5) == []
    # Across queues, one answer.
    assert len(await claim_many(client, worker, 10, queues=["default", "other"])) == 2
    for bad in (0, 101, True, 2.5, "3"):
        refused = await client.post(CLAIM, json={"max_jobs": bad}, headers=worker)
        assert refused.status_code == 422, bad


async def test_complete_with_claim_reports_one_job_and_takes_the_next_in_one_call(
    client: httpx.AsyncClient, services: Services, worker: Headers
) -> None:
    first, second, third = await make_jobs(services.db, 3)
    [claim] = await claim_many(client, worker, 1)
    lease = lease_of(claim)
    answer = await client.post(
        f"/api/v1/jobs/{first}/complete",
        json={
            "token": lease["token"],
            "secret": lease["secret"],
            "result": {"n": 1},
            "claim": {"queues": ["default"], "max_jobs": 2},
        },
        headers=worker,
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["job"]["id"] == first
    assert body["job"]["status"] == "succeeded"
    assert body["job"]["result"] == {"n": 1}
    assert [c["job"]["id"] for c in body["claims"]] == [second, third]
    # fail takes a claim too; nothing left: an empty list, the failure still recorded.
    lease = lease_of(body["claims"][0])
    failed = await client.post(
        f"/api/v1/jobs/{second}/fail",
        json={"token": lease["token"], "secret": lease["secret"], "retry": False, "claim": {}},
        headers=worker,
    )
    assert failed.status_code == 200, failed.text
    assert failed.json()["job"]["status"] == "failed"
    assert failed.json()["claims"] == []
    # Without `claim`, the answer is the job, as it always was.
    lease = lease_of(body["claims"][1])
    plain = await client.post(
        f"/api/v1/jobs/{third}/complete",
        json={"token": lease["token"], "secret": lease["secret"]},
        headers=worker,
    )
    assert plain.json()["id"] == third


async def test_a_batched_report_moves_each_job_and_appends_their_changes_together(
    client: httpx.AsyncClient, services: Services, worker: Headers
) -> None:
    ids = await make_jobs(services.db, 6, max_attempts=3)
    claims = await claim_many(client, worker, 3)
    before = await latest_revision(services.db)
    answer = await client.post(
        REPORT,
        json={
            "complete": [{**lease_of(claims[0]), "result": [1]}],
            "fail": [{**lease_of(claims[1]), "error": "boom"}],
            "release": [lease_of(claims[2])],
            "claim": {"max_jobs": 2},
        },
        headers=worker,
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert [(o["id"], o["code"], o["job"]["status"]) for o in body["complete"]] == [
        (ids[0], 200, "succeeded")
    ]
    assert body["fail"][0]["job"]["status"] == "pending"  # attempts left: retried later
    assert body["fail"][0]["job"]["error"] == "boom"
    assert body["release"][0]["job"]["status"] == "pending"
    assert body["release"][0]["job"]["attempts"] == 0
    # The released job keeps its place in line: it is claimed before the jobs after it.
    assert [c["job"]["id"] for c in body["claims"]] == [ids[2], ids[3]]
    changes = await changes_after(services.db, revision=before)
    assert [c.revision for c in changes] == list(range(before + 1, before + 6))
    assert [(c.resource_id, orjson.loads(c.data or "")["status"]) for c in changes] == [
        (ids[0], "succeeded"),
        (ids[1], "pending"),
        (ids[2], "pending"),
        (ids[2], "running"),
        (ids[3], "running"),
    ]


async def test_a_stale_or_forged_lease_in_a_batch_refuses_only_that_job(
    client: httpx.AsyncClient, services: Services, worker: Headers
) -> None:
    await make_jobs(services.db, 4)
    a, b, c, d = await claim_many(client, worker, 4)
    stale = {**lease_of(b), **forged(services, b["job"]["id"], 0)}
    wrong_secret = {**lease_of(c), "secret": "x" * 32}
    nowhere = "00000000-0000-4000-8000-000000000000"
    missing = {"id": nowhere, **forged(services, nowhere, 1)}
    before = {x["job"]["id"]: await job_row(services, x["job"]["id"]) for x in (b, c)}
    answer = await client.post(
        REPORT,
        json={
            "complete": [
                {**lease_of(a), "result": "ok"},
                {**stale, "result": "late"},
                {**wrong_secret, "result": "forged"},
                {**missing, "result": "?"},
            ]
        },
        headers=worker,
    )
    assert answer.status_code == 200, answer.text
    outcomes = answer.json()["complete"]
    assert [o["code"] for o in outcomes] == [200, 409, 409, 404]
    assert outcomes[0]["job"]["result"] == "ok"
    assert outcomes[1]["error"]["code"] == 409
    assert outcomes[2]["error"]["message"] == outcomes[1]["error"]["message"]
    for refused in (b, c):
        assert await job_row(services, refused["job"]["id"]) == before[refused["job"]["id"]]
    # Heartbeats alike: each lease its own answer.
    beats = await client.post(
        HEARTBEAT, json={"leases": [lease_of(d), stale], "lease_seconds": 60}, headers=worker
    )
    assert beats.status_code == 200, beats.text
    first, second = beats.json()["leases"]
    assert (first["code"], first["id"], first["status"]) == (200, d["job"]["id"], "running")
    assert first["lease"]["expires_at"] > d["lease"]["expires_at"]
    assert first["lease"]["secret"] == d["lease"]["secret"]
    assert (second["code"], second["id"]) == (409, b["job"]["id"])


async def test_batched_heartbeats_extend_every_lease_and_say_which_jobs_to_stop(
    client: httpx.AsyncClient, services: Services, worker: Headers
) -> None:
    ids = await make_jobs(services.db, 3, created_by="worker-1")
    claims = await claim_many(client, worker, 3, lease_seconds=5)
    cancelled = await client.post(
        f"/api/v1/jobs/{ids[1]}/cancel", headers=await admin_headers(client)
    )
    assert cancelled.status_code == 202
    answer = await client.post(
        HEARTBEAT,
        json={"leases": [lease_of(c) for c in claims], "lease_seconds": 60},
        headers=worker,
    )
    assert answer.status_code == 200
    beats = answer.json()["leases"]
    assert [b["id"] for b in beats] == ids
    assert [b["cancel_requested"] for b in beats] == [False, True, False]
    for beat, claim in zip(beats, claims, strict=True):
        assert beat["lease"]["expires_at"] > claim["lease"]["expires_at"]


async def test_batches_refuse_bad_input_whole_and_change_nothing(
    client: httpx.AsyncClient, services: Services, worker: Headers
) -> None:
    await make_jobs(services.db, 2)
    claims = await claim_many(client, worker, 2)
    rows = [await job_row(services, c["job"]["id"]) for c in claims]
    one = lease_of(claims[0])
    for body in (
        {"complete": [{**one, "surprise": 1}]},
        {"complete": [{**one, "id": "not-a-uuid"}]},
        {"release": [{"id": one["id"], "token": one["token"]}]},  # no secret
        {"complete": [one] * 101},
    ):
        refused = await client.post(REPORT, json=body, headers=worker)
        assert refused.status_code == 422, (body, refused.text)
        assert refused.json()["error"]["code"] == 422
    beats: list[dict[str, Any]] = [{"leases": []}, {"leases": [one], "lease_seconds": 0}]
    for beat in beats:
        refused = await client.post(HEARTBEAT, json=beat, headers=worker)
        assert refused.status_code == 422, (beat, refused.text)
    assert [await job_row(services, c["job"]["id"]) for c in claims] == rows
    # A result that cannot be stored (over 64 KiB) refuses that report alone.
    answer = await client.post(
        REPORT,
        json={"complete": [{**one, "result": "x" * 70_000}, {**lease_of(claims[1]), "result": 2}]},
        headers=worker,
    )
    assert [o["code"] for o in answer.json()["complete"]] == [422, 200]
    # A job reported twice in one call: the first report counts, the second is refused alone.
    [third] = await make_jobs(services.db)
    again = await claim_many(client, worker, 1)
    twice = await client.post(
        REPORT,
        json={"complete": [{**lease_of(again[0]), "result": "a"}], "fail": [lease_of(again[0])]},
        headers=worker,
    )
    assert [twice.json()[verb][0]["code"] for verb in ("complete", "fail")] == [200, 409]
    assert (await job_row(services, third))["status"] == "succeeded"
    # Nothing to do is done at once.
    empty = await client.post(REPORT, json={}, headers=worker)
    assert empty.json() == {"complete": [], "fail": [], "release": [], "claims": []}
