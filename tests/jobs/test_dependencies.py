"""Jobs that depend on other jobs: `waiting` until every parent has succeeded, cancelled
down the chain when one does not, on both backends, through real claims."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from orchestrator.db.changelog import changes_after, latest_revision
from orchestrator.services import Services
from tests.support.users import account

JOBS = "/api/v1/jobs"
Headers = dict[str, str]


async def create(client: httpx.AsyncClient, headers: Headers, **fields: Any) -> dict[str, Any]:
    response = await client.post(JOBS, json={"title": "a job", **fields}, headers=headers)
    assert response.status_code == 201, response.text
    job: dict[str, Any] = response.json()
    return job


async def read(client: httpx.AsyncClient, headers: Headers, job_id: str) -> dict[str, Any]:
    response = await client.get(f"{JOBS}/{job_id}", headers=headers)
    assert response.status_code == 200, response.text
    job: dict[str, Any] = response.json()
    return job


async def statuses(client: httpx.AsyncClient, headers: Headers) -> dict[str, str]:
    response = await client.get(JOBS, headers=headers)
    return {job["id"]: job["status"] for job in response.json()["jobs"]}


def lease_of(claim: dict[str, Any]) -> dict[str, Any]:
    return {"id": claim["job"]["id"], **{k: claim["lease"][k] for k in ("token", "secret")}}


async def claim_some(
    client: httpx.AsyncClient, worker: Headers, max_jobs: int, queue: str = "default"
) -> list[dict[str, Any]]:
    response = await client.post(
        f"{JOBS}/claim", json={"queues": [queue], "max_jobs": max_jobs}, headers=worker
    )
    assert response.status_code in (200, 204), response.text
    claims: list[dict[str, Any]] = response.json()["claims"] if response.status_code == 200 else []
    return claims


async def assert_parents_succeeded(
    client: httpx.AsyncClient, headers: Headers, claims: list[dict[str, Any]]
) -> None:
    """Nothing claimed early: every parent of every claimed job has succeeded."""
    for claim in claims:
        for parent in claim["job"]["depends_on"]:
            assert (await read(client, headers, parent))["status"] == "succeeded", (
                f"{claim['job']['id']} was claimed before its parent {parent} succeeded"
            )


async def complete(
    client: httpx.AsyncClient, worker: Headers, claim: dict[str, Any], result: Any = None
) -> None:
    lease = lease_of(claim)
    response = await client.post(
        f"{JOBS}/{lease.pop('id')}/complete", json={**lease, "result": result}, headers=worker
    )
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "succeeded"


async def fail_for_good(client: httpx.AsyncClient, worker: Headers, job_id: str) -> None:
    [claim] = await claim_some(client, worker, 1)
    assert claim["job"]["id"] == job_id
    lease = lease_of(claim)
    lease.pop("id")
    response = await client.post(
        f"{JOBS}/{job_id}/fail", json={**lease, "error": "boom", "retry": False}, headers=worker
    )
    assert response.json()["status"] == "failed", response.text


async def test_a_chain_of_100_jobs_runs_in_order_with_no_job_claimed_early(
    client: httpx.AsyncClient, services: Services
) -> None:
    alice = await account(services, "alice")
    worker = await account(services, "robot", role="worker")
    chain = [await create(client, alice, title="step 0")]
    for n in range(1, 100):
        chain.append(await create(client, alice, title=f"step {n}", depends_on=[chain[-1]["id"]]))
    assert chain[0]["status"] == "pending"
    assert chain[0]["depends_on"] == []
    assert {job["status"] for job in chain[1:]} == {"waiting"}
    assert chain[5]["depends_on"] == [chain[4]["id"]]
    filtered = await client.get(JOBS, params={"status": "waiting"}, headers=alice)
    assert len(filtered.json()["jobs"]) == 99
    queue = await client.get("/api/v1/queues/default", headers=alice)
    assert queue.status_code == 200, queue.text
    counts = queue.json()["counts"]
    assert (counts["waiting"], counts["pending"], counts["running"]) == (99, 1, 0)

    # Each claim asks for up to ten jobs; only the one whose parent succeeded is due. Half
    # the steps complete and claim in one report (the child made pending is claimed by it).
    order: list[str] = []
    [current] = await claim_some(client, worker, 10)
    while True:
        await assert_parents_succeeded(client, alice, [current])
        order.append(current["job"]["id"])
        if len(order) % 2:
            await complete(client, worker, current, result=len(order))
            claims = await claim_some(client, worker, 10)
        else:
            answer = await client.post(
                f"{JOBS}/report",
                json={
                    "complete": [{**lease_of(current), "result": len(order)}],
                    "claim": {"queues": ["default"], "max_jobs": 10},
                },
                headers=worker,
            )
            assert answer.status_code == 200, answer.text
            assert answer.json()["complete"][0]["code"] == 200
            claims = answer.json()["claims"]
        if not claims:
            break
        assert len(claims) == 1
        [current] = claims
    assert order == [job["id"] for job in chain]
    assert set((await statuses(client, alice)).values()) == {"succeeded"}
    last = await read(client, alice, chain[-1]["id"])
    assert last["result"] == 100


async def test_a_fan_in_of_100_parents_runs_the_child_last(
    client: httpx.AsyncClient, services: Services
) -> None:
    alice = await account(services, "alice")
    worker = await account(services, "robot", role="worker")
    parents = [(await create(client, alice, title=f"part {n}"))["id"] for n in range(100)]
    child = await create(client, alice, title="join", depends_on=parents, priority=9)
    assert child["status"] == "waiting"
    assert child["depends_on"] == parents

    # Batches of claims, completed one by one: the child (of the highest priority) is never
    # among them before its last parent succeeded.
    for _ in range(9):
        claims = await claim_some(client, worker, 10)
        assert len(claims) == 10
        assert child["id"] not in {claim["job"]["id"] for claim in claims}
        for claim in claims:
            await complete(client, worker, claim)
    assert (await read(client, alice, child["id"]))["status"] == "waiting"
    # The last ten complete at the same time (separate transactions racing on PostgreSQL):
    # whichever commits last makes the child pending.
    claims = await claim_some(client, worker, 100)
    assert len(claims) == 10
    await asyncio.gather(*(complete(client, worker, claim) for claim in claims))
    assert (await read(client, alice, child["id"]))["status"] == "pending"
    [last] = await claim_some(client, worker, 100)
    assert last["job"]["id"] == child["id"]
    await assert_parents_succeeded(client, alice, [last])


async def test_a_parent_that_fails_for_good_cancels_exactly_its_descendants(
    client: httpx.AsyncClient, services: Services
) -> None:
    alice = await account(services, "alice")
    worker = await account(services, "robot", role="worker")
    a = (await create(client, alice, title="a", priority=5))["id"]
    s = (await create(client, alice, title="sibling"))["id"]
    b = (await create(client, alice, title="b", depends_on=[a]))["id"]
    c = (await create(client, alice, title="c", depends_on=[b]))["id"]
    d = (await create(client, alice, title="d", depends_on=[s, a]))["id"]
    e = (await create(client, alice, title="e", depends_on=[s]))["id"]
    x = (await create(client, alice, title="unrelated"))["id"]
    before = await latest_revision(services.db)

    await fail_for_good(client, worker, a)

    now = await statuses(client, alice)
    assert {job_id: now[job_id] for job_id in (a, b, c, d, s, e, x)} == {
        a: "failed",
        b: "cancelled",
        c: "cancelled",
        d: "cancelled",
        s: "pending",
        e: "waiting",
        x: "pending",
    }
    assert (await read(client, alice, b))["error"] == f"parent job {a} failed"
    assert (await read(client, alice, c))["error"] == f"parent job {b} was cancelled"
    assert (await read(client, alice, d))["error"] == f"parent job {a} failed"
    assert (await read(client, alice, d))["finished_at"] is not None
    # In the change log, in the failing transaction's order: the parent, then down the chain.
    changes = [
        (change.resource_id, change.data and _status(change.data))
        for change in await changes_after(services.db, revision=before)
        if change.collection == "jobs"
    ]
    assert changes[-4:] == [
        (a, "failed"),
        (b, "cancelled"),
        (d, "cancelled"),
        (c, "cancelled"),
    ] or changes[-4:] == [(a, "failed"), (d, "cancelled"), (b, "cancelled"), (c, "cancelled")]

    # A job may now name the failed parent: it is cancelled at once, as its children were.
    late = await create(client, alice, title="late", depends_on=[a])
    assert (late["status"], late["error"]) == ("cancelled", f"parent job {a} failed")
    # Cancelling a waiting job cancels it and what waits on it; deleting an unfinished
    # parent cancels its children.
    f = (await create(client, alice, title="f", depends_on=[e]))["id"]
    cancelled = await client.post(f"{JOBS}/{e}/cancel", headers=alice)
    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "cancelled"
    assert (await read(client, alice, f))["error"] == f"parent job {e} was cancelled"
    g = (await create(client, alice, title="g", depends_on=[x]))["id"]
    assert (await client.delete(f"{JOBS}/{x}", headers=alice)).status_code == 204
    assert (await read(client, alice, g))["error"] == f"parent job {x} was deleted"
    # A deleted parent stays listed, and holds nothing back for a retry.
    assert (await read(client, alice, g))["depends_on"] == [x]


def _status(data: str) -> str:
    import orjson

    status: str = orjson.loads(data)["status"]
    return status


async def test_waiting_becomes_pending_in_the_parents_transaction_on_the_feed(
    client: httpx.AsyncClient, services: Services
) -> None:
    alice = await account(services, "alice")
    worker = await account(services, "robot", role="worker")
    parent = (await create(client, alice, title="parent"))["id"]
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    child = (await create(client, alice, title="child", depends_on=[parent]))["id"]
    scheduled = (await create(client, alice, title="later", depends_on=[parent], run_at=later))[
        "id"
    ]
    before = await latest_revision(services.db)
    [claim] = await claim_some(client, worker, 10)
    assert claim["job"]["id"] == parent
    await complete(client, worker, claim, result={"answer": 42})

    changes = [
        (change.revision, change.resource_id, _status(change.data or "{}"))
        for change in await changes_after(services.db, revision=before)
    ]
    assert [(job_id, status) for _, job_id, status in changes[:2]] == [
        (parent, "running"),
        (parent, "succeeded"),
    ]
    assert sorted((job_id, status) for _, job_id, status in changes[2:]) == sorted(
        [(child, "pending"), (scheduled, "pending")]
    )
    # One transaction: consecutive revisions, the parent's first.
    assert [revision for revision, _, _ in changes[1:]] == list(
        range(changes[1][0], changes[1][0] + 3)
    )
    # The scheduled child is pending but not due: a claim takes only the other one.
    body = await read(client, alice, scheduled)
    assert body["status"] == "pending"
    assert body["run_at"] is not None
    claims = await claim_some(client, worker, 10)
    assert [c["job"]["id"] for c in claims] == [child]
    # The handler reads its parents' results through the API.
    parents = [await read(client, alice, p) for p in claims[0]["job"]["depends_on"]]
    assert [p["result"] for p in parents] == [{"answer": 42}]


async def test_parents_that_already_succeeded_make_a_pending_job(
    client: httpx.AsyncClient, services: Services
) -> None:
    alice = await account(services, "alice")
    worker = await account(services, "robot", role="worker")
    parent = (await create(client, alice, title="parent"))["id"]
    [claim] = await claim_some(client, worker, 1)
    await complete(client, worker, claim)
    child = await create(client, alice, title="child", depends_on=[parent, parent.upper()])
    assert (child["status"], child["depends_on"]) == ("pending", [parent])


async def test_children_are_created_while_their_parents_complete_in_one_report(
    client: httpx.AsyncClient, services: Services
) -> None:
    """A create locks a child's parents; a worker's report completing them all locks them in
    its own order. Neither may wait for the other while holding some (PostgreSQL would find a
    deadlock and abort one): every create and every report succeeds, and every child ends
    pending, its parents having all succeeded."""
    alice = await account(services, "alice")
    worker = await account(services, "robot", role="worker")
    for round_ in range(6):
        parents = [(await create(client, alice, title=f"part {n}"))["id"] for n in range(100)]
        claims = await claim_some(client, worker, 100)
        assert len(claims) == 100
        # The report names the parents in the reverse of the order a create locks them in.
        claims.sort(key=lambda claim: claim["job"]["id"], reverse=True)
        report = client.post(
            f"{JOBS}/report",
            json={"complete": [lease_of(claim) for claim in claims]},
            headers=worker,
        )
        creates = [
            client.post(
                JOBS,
                json={"title": f"join {round_}.{n}", "depends_on": sorted(parents)[::step]},
                headers=alice,
            )
            for n, step in enumerate((1, 1, 2, 3))
        ]
        answers = await asyncio.gather(report, *creates)
        assert [answer.status_code for answer in answers] == [200, 201, 201, 201, 201], [
            answer.text for answer in answers if answer.status_code >= 300
        ]
        assert {outcome["code"] for outcome in answers[0].json()["complete"]} == {200}
        for answer in answers[1:]:
            child = await read(client, alice, answer.json()["id"])
            assert child["status"] == "pending", child
        assert len(await claim_some(client, worker, 100)) == 4


async def test_bad_dependencies_get_422_and_create_nothing(
    client: httpx.AsyncClient, services: Services
) -> None:
    alice = await account(services, "alice")
    parent = (await create(client, alice, title="parent"))["id"]
    unknown = str(uuid.uuid4())
    before = await latest_revision(services.db)
    bodies: list[Any] = [
        [parent, unknown],
        [str(uuid.uuid4()) for _ in range(101)],
        [1, 2],
        ["not-a-job-id"],
        parent,
        None,
        [None],
    ]
    for depends_on in bodies:
        response = await client.post(
            JOBS, json={"title": "child", "depends_on": depends_on}, headers=alice
        )
        assert response.status_code == 422, (depends_on, response.text)
        error = response.json()["error"]
        assert error["code"] == 422
        assert error["path"] == JOBS
    response = await client.post(
        JOBS, json={"title": "child", "depends_on": [parent, unknown]}, headers=alice
    )
    assert unknown in response.json()["error"]["message"]
    assert await latest_revision(services.db) == before
    assert list(await statuses(client, alice)) == [parent]
    row = await services.db.fetch_one("SELECT count(*) AS n FROM job_dependencies")
    assert row is not None
    assert int(row["n"]) == 0
    flagged = await services.db.fetch_one(
        "SELECT has_dependents FROM jobs WHERE id = :id", {"id": parent}
    )
    assert flagged is not None
    assert not flagged["has_dependents"]


async def test_unique_keys_idempotent_creates_and_retries_know_waiting_jobs(
    client: httpx.AsyncClient, services: Services
) -> None:
    alice = await account(services, "alice")
    worker = await account(services, "robot", role="worker")
    parent = (await create(client, alice, title="parent", max_attempts=1))["id"]
    child = await create(client, alice, title="child", depends_on=[parent], unique_key="k")
    # A waiting job holds its unique key.
    again = await client.post(
        JOBS, json={"title": "child", "depends_on": [parent], "unique_key": "k"}, headers=alice
    )
    assert again.status_code == 200
    assert again.json()["id"] == child["id"]
    # The same idempotency key replays the first answer.
    key = {"Idempotency-Key": "dep-1", **alice}
    first = await client.post(JOBS, json={"title": "t", "depends_on": [parent]}, headers=key)
    second = await client.post(JOBS, json={"title": "t", "depends_on": [parent]}, headers=key)
    assert first.status_code == 201
    assert second.json()["id"] == first.json()["id"]

    await fail_for_good(client, worker, parent)
    assert (await read(client, alice, child["id"]))["status"] == "cancelled"
    # A retried child waits again while its parent has not succeeded; the parent retried
    # and completed, the child is pending.
    retried = await client.post(f"{JOBS}/{child['id']}/retry", headers=alice)
    assert retried.json()["status"] == "waiting"
    bulk = await client.post(
        f"{JOBS}/bulk", json={"action": "retry", "ids": [parent]}, headers=alice
    )
    assert bulk.json()["changed"] == 1
    [claim] = await claim_some(client, worker, 10)
    assert claim["job"]["id"] == parent
    await complete(client, worker, claim)
    now = await statuses(client, alice)
    assert now[child["id"]] == "pending"
    assert now[first.json()["id"]] == "cancelled"
    # A bulk cancel by the status filter cancels waiting jobs.
    waiting = await create(client, alice, title="w", depends_on=[child["id"]])
    cancel = await client.post(
        f"{JOBS}/bulk",
        json={"action": "cancel", "filter": {"status": "waiting"}},
        headers=alice,
    )
    assert cancel.json()["changed"] == 1
    assert (await read(client, alice, waiting["id"]))["status"] == "cancelled"


async def test_a_parent_whose_lease_expires_for_good_cancels_its_children(
    client: httpx.AsyncClient, services: Services
) -> None:
    alice = await account(services, "alice")
    worker = await account(services, "robot", role="worker")
    parent = (await create(client, alice, title="parent", max_attempts=1))["id"]
    child = (await create(client, alice, title="child", depends_on=[parent]))["id"]
    claim = await client.post(f"{JOBS}/claim", json={"lease_seconds": 1}, headers=worker)
    assert claim.json()["job"]["id"] == parent
    # The worker goes silent: the sweeper fails the parent, and cancels the child with it.
    deadline = asyncio.get_running_loop().time() + 15
    while (await read(client, alice, child))["status"] == "waiting":
        assert asyncio.get_running_loop().time() < deadline, "the child still waits"
        await asyncio.sleep(0.05)
    assert (await read(client, alice, parent))["status"] == "failed"
    body = await read(client, alice, child)
    assert (body["status"], body["error"]) == ("cancelled", f"parent job {parent} failed")


async def test_the_openapi_document_knows_waiting_and_depends_on(
    client: httpx.AsyncClient,
) -> None:
    schema = (await client.get("/openapi.json")).json()
    create = schema["components"]["schemas"]["JobCreate"]["properties"]["depends_on"]
    assert create["maxItems"] == 100
    assert create["items"]["pattern"]
    parameters = schema["paths"][JOBS]["get"]["parameters"]
    [status] = [p for p in parameters if p["name"] == "status"]
    assert status["schema"]["enum"][0] == "waiting"
    schemas = schema["components"]["schemas"]
    assert "waiting" in schemas["BulkFilter"]["properties"]["status"]["anyOf"][0]["enum"]
    assert "waiting" in str(schemas["QueueAnswer"]["properties"]["counts"])
