from __future__ import annotations

from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.apps import client_for, running_app

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
