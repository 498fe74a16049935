from __future__ import annotations

from pathlib import Path

import httpx
from starlette.responses import Response

from orchestrator.http.edge import Edge
from orchestrator.observability.metrics import Metrics
from tests.support.apps import client_for, running_app

API_CSP = "default-src 'none'; frame-ancestors 'none'"


def assert_protected(response: httpx.Response) -> None:
    headers = response.headers
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["referrer-policy"] == "no-referrer"
    assert headers["x-frame-options"] == "DENY"
    assert "server" not in headers
    assert headers["x-request-id"]


async def test_every_kind_of_response_carries_the_headers(tmp_path: Path) -> None:
    overrides = {"rate_limit_enabled": True, "rate_limit_reads": "3/minute", "max_body_bytes": 1024}
    async with running_app(tmp_path, **overrides) as app, client_for(app) as client:
        responses = {
            200: await client.get("/health"),
            404: await client.get("/nowhere"),
            405: await client.delete("/health"),
            413: await client.post("/auth/login", content=b"x" * 2048),
            422: await client.post("/auth/login", json={}),
            500: await client.get("/__test__/fail"),
        }
        async with client_for(app, ("192.0.2.1", 1000)) as remote:
            responses[403] = await remote.get("/metrics")
            for _ in range(3):
                await remote.get("/nowhere")
            responses[429] = await remote.get("/nowhere")
        for status, response in responses.items():
            assert response.status_code == status
            assert_protected(response)
            assert response.headers["content-security-policy"] == API_CSP
            if status >= 400:
                assert response.json()["error"]["code"] == status
        assert "Traceback" not in responses[500].text
        assert "forced failure" not in responses[500].text


async def test_docs_get_a_policy_that_lets_them_load(tmp_path: Path) -> None:
    async with running_app(tmp_path) as app, client_for(app) as client:
        for path in ("/docs", "/redoc"):
            response = await client.get(path)
            assert response.status_code == 200
            assert_protected(response)
            csp = response.headers["content-security-policy"]
            directives = dict(d.strip().split(" ", 1) for d in csp.split(";"))
            # Their scripts are files the service serves: no inline script, no other host.
            assert directives["script-src"] == "'self'"
            assert "http" not in csp
            assert directives["frame-ancestors"] == "'none'"


async def test_not_modified_responses_carry_the_headers() -> None:
    app = Edge(
        Response(status_code=304, headers={"Server": "leaky/1.0"}),
        metrics=Metrics(),
        identify=lambda _scope: None,
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        response = await client.get("/api/v1/jobs", headers={"If-None-Match": '"x"'})
    assert response.status_code == 304
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["content-security-policy"] == API_CSP
    assert "server" not in response.headers
