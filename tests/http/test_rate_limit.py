from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import get_args

import httpx
import jwt
import pytest
from fastapi.params import Depends
from fastapi.routing import APIRoute

from orchestrator.app import create_app
from orchestrator.auth.deps import WorkerRole
from orchestrator.config import Settings
from orchestrator.http.rate_limit import RoutePolicies
from tests.support.apps import client_for, running_app, services_of
from tests.support.settings import make_settings
from tests.support.users import ADMIN_PASSWORD

LIMITED = {"rate_limit_enabled": True}


def assert_refused(response: httpx.Response, policy: str, quota: int) -> None:
    assert response.status_code == 429, response.text
    error = response.json()["error"]
    assert error["code"] == 429
    assert error["type"] == "http_exception"
    assert error["request_id"] == response.headers["x-request-id"]
    retry_after = int(response.headers["retry-after"])
    assert 1 <= retry_after <= 60
    assert response.headers["ratelimit-policy"] == f'"{policy}";q={quota};w=60'
    assert response.headers["ratelimit"] == f'"{policy}";r=0;t={retry_after}'


def test_rate_limiting_is_on_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ORCH_RATE_LIMIT_ENABLED", raising=False)
    settings = Settings()
    assert settings.rate_limit_enabled
    assert settings.rate_limit_login == "5/minute"
    assert settings.rate_limit_login_ip == "20/minute"
    assert settings.rate_limit_writes == "120/minute"
    assert settings.rate_limit_reads == "600/minute"
    assert settings.rate_limit_ws_connect == "30/minute"
    monkeypatch.setenv("ORCH_RATE_LIMIT_ENABLED", "false")
    assert not Settings().rate_limit_enabled


def test_a_malformed_policy_is_refused_at_start() -> None:
    with pytest.raises(ValueError, match="rate limit"):
        Settings(rate_limit_reads="lots")


async def test_login_allows_five_attempts_per_username_and_ip(tmp_path: Path) -> None:
    async with running_app(tmp_path, **LIMITED) as app, client_for(app) as client:
        for _ in range(5):
            wrong = {"username": "admin", "password": "not-the-password"}
            assert (await client.post("/auth/login", json=wrong)).status_code == 401
        right = {"username": "ADMIN", "password": ADMIN_PASSWORD}
        assert_refused(await client.post("/auth/login", json=right), "login", 5)
        # another username from the same address has its own count
        other = {"username": "nobody", "password": "whatever-password"}
        assert (await client.post("/auth/login", json=other)).status_code == 401
        # and the same username from another address too
        async with client_for(app, ("198.51.100.7", 40000)) as elsewhere:
            response = await elsewhere.post("/auth/login", json=right)
            assert response.status_code == 200


async def test_login_allows_twenty_attempts_per_ip(tmp_path: Path) -> None:
    limited_app = running_app(tmp_path, **LIMITED, rate_limit_login_ip="4/minute")
    async with limited_app as app, client_for(app) as client:
        for n in range(4):
            body = {"username": f"user{n}", "password": "whatever-password"}
            assert (await client.post("/auth/login", json=body)).status_code == 401
        body = {"username": "admin", "password": ADMIN_PASSWORD}
        assert_refused(await client.post("/auth/login", json=body), "login_ip", 4)


async def test_reads_and_writes_are_counted_per_verified_user(tmp_path: Path) -> None:
    overrides = {"rate_limit_reads": "5/minute", "rate_limit_writes": "3/minute"}
    async with running_app(tmp_path, **LIMITED, **overrides) as app, client_for(app) as client:
        tokens = services_of(app).tokens
        admin = {"Authorization": f"Bearer {tokens.issue('admin')}"}
        for _ in range(5):
            assert (await client.get("/api/v1/nothing", headers=admin)).status_code == 404
        assert_refused(await client.get("/api/v1/nothing", headers=admin), "reads", 5)
        # a second token of the same user shares the count
        again = {"Authorization": f"Bearer {tokens.issue('admin')}"}
        assert (await client.get("/api/v1/nothing", headers=again)).status_code == 429
        # writes have their own budget
        for _ in range(3):
            assert (await client.post("/api/v1/nothing", headers=admin)).status_code == 404
        assert_refused(await client.post("/api/v1/nothing", headers=admin), "writes", 3)
        # another user, and anonymous requests from the same address, are not affected
        bob = {"Authorization": f"Bearer {tokens.issue('bob')}"}
        assert (await client.get("/api/v1/nothing", headers=bob)).status_code == 404
        assert (await client.get("/api/v1/nothing")).status_code == 404
        # probes are never limited
        assert (await client.get("/health", headers=admin)).status_code == 200


def forged(sub: str) -> str:
    now = int(time.time())
    claims = {"sub": sub, "iss": "orchestrator", "aud": "orchestrator-api", "iat": now}
    claims |= {"exp": now + 600, "jti": sub}
    return jwt.encode(claims, "an-attackers-own-key-of-enough-length!!", algorithm="HS256")


async def test_forged_tokens_count_against_the_client_address(tmp_path: Path) -> None:
    limited_app = running_app(tmp_path, **LIMITED, rate_limit_reads="3/minute")
    async with limited_app as app, client_for(app) as client:
        # a fresh made-up subject each time would be a fresh budget if claims were trusted
        for n in range(3):
            headers = {"Authorization": f"Bearer {forged(f'mallory{n}')}"}
            assert (await client.get("/api/v1/nothing", headers=headers)).status_code == 404
        headers = {"Authorization": f"Bearer {forged('mallory-again')}"}
        assert_refused(await client.get("/api/v1/nothing", headers=headers), "reads", 3)
        unsigned = jwt.encode({"sub": "admin"}, None, algorithm="none")
        response = await client.get("/api/v1/nothing", headers={"Authorization": unsigned})
        assert response.status_code == 429
        # forging the admin's name did not spend the admin's budget
        admin = {"Authorization": f"Bearer {services_of(app).tokens.issue('admin')}"}
        for _ in range(3):
            assert (await client.get("/api/v1/nothing", headers=admin)).status_code == 404


async def test_spoofed_forwarded_for_is_ignored_without_trusted_proxies(tmp_path: Path) -> None:
    limited_app = running_app(tmp_path, **LIMITED, rate_limit_reads="3/minute")
    async with limited_app as app, client_for(app) as client:
        for n in range(3):
            headers = {"X-Forwarded-For": f"203.0.113.{n}"}
            assert (await client.get("/api/v1/nothing", headers=headers)).status_code == 404
        headers = {"X-Forwarded-For": "203.0.113.200"}
        assert_refused(await client.get("/api/v1/nothing", headers=headers), "reads", 3)


async def test_forwarded_for_is_believed_only_from_trusted_proxies(tmp_path: Path) -> None:
    overrides = {"rate_limit_reads": "2/minute", "trusted_proxies": "127.0.0.1,10.0.0.0/8"}
    async with running_app(tmp_path, **LIMITED, **overrides) as app, client_for(app) as proxy:
        first = {"X-Forwarded-For": "203.0.113.1"}
        for _ in range(2):
            assert (await proxy.get("/api/v1/nothing", headers=first)).status_code == 404
        assert (await proxy.get("/api/v1/nothing", headers=first)).status_code == 429
        # the client prepends a made-up address; the proxy appends the one it saw
        spoofed = {"X-Forwarded-For": "198.51.100.9, 203.0.113.1, 10.1.2.3"}
        assert (await proxy.get("/api/v1/nothing", headers=spoofed)).status_code == 429
        second = {"X-Forwarded-For": "203.0.113.2"}
        assert (await proxy.get("/api/v1/nothing", headers=second)).status_code == 404
        # an untrusted peer cannot claim to be a proxy
        async with client_for(app, ("192.0.2.50", 1234)) as direct:
            for n in range(2):
                headers = {"X-Forwarded-For": f"203.0.113.{50 + n}"}
                assert (await direct.get("/api/v1/nothing", headers=headers)).status_code == 404
            response = await direct.get("/api/v1/nothing", headers={"X-Forwarded-For": "1.2.3.4"})
            assert response.status_code == 429


async def test_disabled_rate_limits_never_refuse(tmp_path: Path) -> None:
    overrides = {"rate_limit_reads": "1/minute", "rate_limit_login": "1/minute"}
    limited_app = running_app(tmp_path, rate_limit_enabled=False, **overrides)
    async with limited_app as app, client_for(app) as client:
        for _ in range(3):
            assert (await client.get("/api/v1/nothing")).status_code == 404
            body = {"username": "nobody", "password": "whatever-password"}
            assert (await client.post("/auth/login", json=body)).status_code == 401


async def test_refusals_are_readable_by_allowed_origins(tmp_path: Path) -> None:
    overrides = {"rate_limit_reads": "1/minute", "cors_origins": "https://console.example"}
    async with running_app(tmp_path, **LIMITED, **overrides) as app, client_for(app) as client:
        origin = {"Origin": "https://console.example"}
        await client.get("/api/v1/nothing", headers=origin)
        response = await client.get("/api/v1/nothing", headers=origin)
        assert response.status_code == 429
        assert response.headers["access-control-allow-origin"] == "https://console.example"
        assert "Retry-After" in response.headers["access-control-expose-headers"]


async def test_websocket_connects_are_counted_per_user_whatever_carries_the_token(
    tmp_path: Path,
) -> None:
    async with running_app(tmp_path, **LIMITED) as app:
        limits = services_of(app).rate_limits
        token = services_of(app).tokens.issue("admin")
        base = {"type": "websocket", "client": ("192.0.2.1", 1), "query_string": b""}
        carriers: list[dict[str, object]] = [
            {"headers": [(b"authorization", f"Bearer {token}".encode())]},
            {"headers": [], "subprotocols": ["orchestrator", f"bearer.{token}"]},
            {"headers": [], "query_string": f"token={token}".encode()},
        ]
        for carrier in carriers:
            assert limits.key_of({**base, **carrier}) == "user:admin"
        assert limits.key_of({**base, "headers": [], "subprotocols": ["bearer.x"]}) == (
            "ip:192.0.2.1"
        )


async def test_worker_calls_count_against_the_workers_budget(tmp_path: Path) -> None:
    overrides = {"rate_limit_workers": "3/minute", "rate_limit_writes": "10/minute"}
    async with running_app(tmp_path, **LIMITED, **overrides) as app, client_for(app) as client:
        admin = {"Authorization": f"Bearer {services_of(app).tokens.issue('admin')}"}
        job_id = str(uuid.uuid4())
        job = f"/api/v1/jobs/{job_id}"
        lease = {"token": 1, "secret": services_of(app).lease_keys.secret(job_id, 1)}
        assert (await client.post("/api/v1/jobs/claim", json={}, headers=admin)).status_code == 204
        for verb in ("heartbeat", "complete"):
            response = await client.post(f"{job}/{verb}", json=lease, headers=admin)
            assert response.status_code == 404
        response = await client.post(f"{job}/release", json=lease, headers=admin)
        assert_refused(response, "workers", 3)
        # the other writes of the same user have their own budget
        response = await client.post("/api/v1/jobs", json={"title": "t"}, headers=admin)
        assert response.status_code == 201
        assert (await client.post(f"{job}/cancel", headers=admin)).status_code == 404


def test_every_route_for_workers_is_counted_as_a_worker_call(tmp_path: Path) -> None:
    """A new worker route is covered by declaring itself one, not by a pattern of paths."""
    app = create_app(make_settings(f"sqlite:///{tmp_path / 'unused.db'}", tmp_path))
    policies = RoutePolicies(app.router.routes)
    worker_role = next(arg.dependency for arg in get_args(WorkerRole) if isinstance(arg, Depends))
    calls = []
    for route in app.router.routes:
        if isinstance(route, APIRoute) and any(
            dep.call is worker_role for dep in route.dependant.dependencies
        ):
            path = route.path_format.format(
                **{name: uuid.uuid4() for name in route.param_convertors}
            )
            calls += [(method, path) for method in sorted(route.methods or ())]
    assert len(calls) >= 5
    assert {call: policies.of(*call) for call in calls} == dict.fromkeys(calls, "workers")
    # the app's other routes keep the budgets of their methods
    assert policies.of("POST", f"/api/v1/jobs/{uuid.uuid4()}/cancel") == "writes"
    assert policies.of("POST", "/api/v1/jobs") == "writes"
    assert policies.of("GET", "/api/v1/jobs/claim") == "reads"
    assert policies.of("HEAD", "/api/v1/healthz") is None
