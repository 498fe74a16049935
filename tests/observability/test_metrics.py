from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.support.apps import client_for, running_app, services_of
from tests.support.users import admin_auth

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(client: httpx.AsyncClient, **headers: str) -> Samples:
    response = await client.get("/metrics", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def test_metrics_move_with_traffic(tmp_path: Path) -> None:
    overrides = {"rate_limit_enabled": True, "rate_limit_reads": "2/minute"}
    async with running_app(tmp_path, **overrides) as app, client_for(app) as client:
        before = await scrape(client)
        for _ in range(3):
            await client.get("/health")
        await client.post("/auth/login", json={"username": "admin", "password": "wrong-pass"})
        async with client_for(app, ("192.0.2.9", 1000)) as remote:
            for _ in range(3):
                await remote.get("/api/v1/nothing")
        after = await scrape(client)

        health = {"route": "/health", "method": "GET", "status": "200"}
        requests = "orch_http_requests_total"
        assert value(after, requests, **health) - value(before, requests, **health) == 3
        count = "orch_http_request_duration_seconds_count"
        assert value(after, count, **health) - value(before, count, **health) == 3
        login = {"route": "/auth/login", "method": "POST", "status": "401"}
        assert value(after, requests, **login) == 1
        unmatched = {"route": "<unmatched>", "method": "GET", "status": "429"}
        assert value(after, requests, **unmatched) == 1
        assert (
            value(after, "orch_failed_logins_total")
            == value(before, "orch_failed_logins_total") + 1
        )
        assert value(after, "orch_rate_limited_total", policy="reads") == 1
        # the scrape itself is in flight while it is answered
        assert value(after, "orch_http_requests_in_flight") == 1
        assert ("orch_websocket_connections", frozenset()) in after
        assert value(after, "orch_change_feed_lag_revisions") == 0
        assert value(after, "orch_rate_limit_storage_degraded") == 0


async def test_metrics_are_served_to_loopback_only_by_default(tmp_path: Path) -> None:
    async with running_app(tmp_path) as app:
        async with client_for(app, ("::1", 1000)) as local:
            await scrape(local)
        async with client_for(app, ("192.0.2.9", 1000)) as remote:
            response = await remote.get("/metrics")
            assert response.status_code == 403
            assert response.json()["error"]["code"] == 403
            # a forwarded header from an untrusted peer does not make it local
            response = await remote.get("/metrics", headers={"X-Forwarded-For": "127.0.0.1"})
            assert response.status_code == 403


async def test_a_scrape_token_is_required_from_everyone_once_set(tmp_path: Path) -> None:
    token = "scrape-token-for-tests-0123456789"
    async with running_app(tmp_path, metrics_token=token) as app:
        async with client_for(app) as local:
            assert (await local.get("/metrics")).status_code == 401
            wrong = {"Authorization": "Bearer not-the-token"}
            assert (await local.get("/metrics", headers=wrong)).status_code == 401
            await scrape(local, Authorization=f"Bearer {token}")
        async with client_for(app, ("192.0.2.9", 1000)) as remote:
            await scrape(remote, Authorization=f"Bearer {token}")


async def test_jobs_are_counted_by_queue_and_status_and_their_moves_by_queue(
    tmp_path: Path,
) -> None:
    overrides = {"lease_sweep_seconds": 0.1}
    async with running_app(tmp_path, **overrides) as app, client_for(app) as client:
        headers = admin_auth(services_of(app))

        async def call(path: str, body: dict[str, object]) -> dict[str, Any]:
            response = await client.post(path, json=body, headers=headers)
            assert response.status_code in (200, 201), response.text
            answer: dict[str, Any] = response.json()
            return answer

        for queue in ("mail", "mail", "mail", "images"):
            await call("/api/v1/jobs", {"title": "j", "queue": queue, "max_attempts": 1})
        done = await call("/api/v1/jobs/claim", {"queues": ["mail"]})
        lease = {key: done["lease"][key] for key in ("token", "secret")}
        await call(f"/api/v1/jobs/{done['job']['id']}/complete", lease)
        failed = await call("/api/v1/jobs/claim", {"queues": ["mail"]})
        await call(
            f"/api/v1/jobs/{failed['job']['id']}/fail",
            {
                "token": failed["lease"]["token"],
                "secret": failed["lease"]["secret"],
                "retry": False,
            },
        )
        await call("/api/v1/jobs/claim", {"queues": ["images"], "lease_seconds": 1})

        async def expired() -> float:
            return value(await scrape(client), "orch_job_leases_expired_total")

        deadline = asyncio.get_running_loop().time() + 10
        while await expired() < 1:  # the sweeper returns the image job once its lease ends
            assert asyncio.get_running_loop().time() < deadline, "the lease never expired"
            await asyncio.sleep(0.1)
        after = await scrape(client)

    def jobs(queue: str, status: str) -> float:
        return value(after, "orch_jobs", queue=queue, status=status)

    assert jobs("mail", "succeeded") == jobs("mail", "failed") == jobs("mail", "pending") == 1
    assert jobs("images", "failed") == 1  # its only attempt's lease expired
    assert ("orch_jobs", frozenset({("queue", "mail"), ("status", "running")})) not in after
    assert value(after, "orch_job_claims_total", queue="mail") == 2
    assert value(after, "orch_job_claims_total", queue="images") == 1
    assert value(after, "orch_job_completions_total", queue="mail") == 1
    assert value(after, "orch_job_failures_total", queue="mail") == 1
    assert value(after, "orch_job_run_seconds_count", queue="mail") == 1
    assert value(after, "orch_job_queue_wait_seconds_count", queue="mail") == 2
    assert value(after, "orch_job_leases_expired_total") == 1


async def test_plain_routes_are_counted_under_their_own_path(tmp_path: Path) -> None:
    async with running_app(tmp_path) as app, client_for(app) as client:
        for path in ("/openapi.json", "/docs"):
            assert (await client.get(path)).status_code == 200
        after = await scrape(client)
    for path in ("/openapi.json", "/docs"):
        labels = {"route": path, "method": "GET", "status": "200"}
        assert value(after, "orch_http_requests_total", **labels) == 1, path
    assert (
        value(after, "orch_http_requests_total", route="<unmatched>", method="GET", status="200")
        == 0
    )
