"""Shared counters in Redis: several processes, one limit; an outage degrades to local limits."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
import redis.asyncio
from prometheus_client.parser import text_string_to_metric_families
from structlog.testing import capture_logs
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from tests.netproxy import NetProxy
from tests.support.apps import client_for, running_app
from tests.support.databases import REDIS_URL, REQUIRE_SERVICES
from tests.support.servers import ServerProcess, free_port

pytestmark = pytest.mark.redis
# generous: a loaded CI machine can take a while to start a server (migrations, argon2 warm-up)
START_TIMEOUT = 90.0


async def _redis_reachable() -> bool:
    client = redis.asyncio.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        await client.ping()
    except Exception:
        return False
    finally:
        await client.aclose()
    return True


@pytest.fixture
async def redis_prefix() -> AsyncIterator[str]:
    """A key prefix of this test's own; its keys are removed afterwards."""
    if not await _redis_reachable():
        if REQUIRE_SERVICES:
            pytest.fail(f"Redis is required but not reachable at {REDIS_URL}")
        pytest.skip("Redis is not reachable")
    prefix = f"orch-test-{uuid.uuid4().hex[:12]}"
    yield prefix
    client = redis.asyncio.from_url(REDIS_URL)
    try:
        keys = [key async for key in client.scan_iter(match=f"*{prefix}*")]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


def metric(text: str, name: str) -> float:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                return sample.value
    raise AssertionError(f"no metric {name}")


async def test_redis_outage_degrades_to_local_limits(tmp_path: Path, redis_prefix: str) -> None:
    target = urlsplit(REDIS_URL)
    proxy = await NetProxy(target.hostname or "127.0.0.1", target.port or 6379).start()
    url = f"redis://127.0.0.1:{proxy.port}{target.path}"
    overrides = {"rate_limit_reads": "4/minute", "redis_url": url, "redis_key_prefix": redis_prefix}
    try:
        limited_app = running_app(tmp_path, rate_limit_enabled=True, **overrides)
        async with limited_app as app, client_for(app) as client:
            for _ in range(2):
                assert (await client.get("/api/v1/nothing")).status_code == 404
            direct = redis.asyncio.from_url(REDIS_URL)
            try:
                assert [key async for key in direct.scan_iter(match=f"*{redis_prefix}*")]
            finally:
                await direct.aclose()

            await proxy.cut()
            with capture_logs() as logs:
                statuses = [(await client.get("/api/v1/nothing")).status_code for _ in range(6)]
            # local counting starts afresh: four more pass, then the limit holds
            assert statuses == [404] * 4 + [429] * 2
            warnings = [e for e in logs if e["event"] == "rate_limit_storage_unavailable"]
            assert len(warnings) == 1
            assert warnings[0]["log_level"] == "warning"
            scraped = (await client.get("/metrics")).text
            assert metric(scraped, "orch_rate_limit_storage_degraded") == 1
            assert metric(scraped, "orch_rate_limit_storage_fallbacks_total") >= 1

            # Redis comes back: shared counting resumes after the cool-down
            proxy.restore()
            deadline = time.monotonic() + 10
            n = 0
            while time.monotonic() < deadline:
                n += 1
                async with client_for(app, (f"192.0.2.{n}", 1000)) as other:
                    assert (await other.get("/api/v1/nothing")).status_code == 404
                scraped = (await client.get("/metrics")).text
                if metric(scraped, "orch_rate_limit_storage_degraded") == 0:
                    break
                await asyncio.sleep(0.2)
            else:
                raise AssertionError("rate limits never went back to Redis")
    finally:
        await proxy.close()


@pytest.fixture
def server_env(redis_prefix: str) -> dict[str, str]:
    return {
        "ORCH_RATE_LIMIT_ENABLED": "true",
        "ORCH_REDIS_URL": REDIS_URL,
        "ORCH_REDIS_KEY_PREFIX": redis_prefix,
        "ORCH_ADMIN_PASSWORD": "shared-limit-admin-password",
        "ORCH_SECRET_KEY": "shared-limit-secret-key-" + "s" * 32,
    }


@pytest.fixture
def two_servers(tmp_path: Path, server_env: dict[str, str]) -> Iterator[list[ServerProcess]]:
    env = {**server_env, "ORCH_RATE_LIMIT_LOGIN": "4/minute"}
    servers = [
        ServerProcess(
            env={**env, "ORCH_DATA_DIR": str(tmp_path / name)}, log_path=tmp_path / f"{name}.log"
        )
        for name in ("a", "b")
    ]
    try:
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(lambda server: server.start(timeout=START_TIMEOUT), servers))
        yield servers
    finally:
        for server in servers:
            server.stop()


@pytest.mark.e2e
def test_two_processes_share_one_limit(two_servers: list[ServerProcess]) -> None:
    wrong = {"username": "admin", "password": "not-the-password"}
    for n in range(4):
        server = two_servers[n % 2]
        assert httpx.post(f"{server.url}/auth/login", json=wrong).status_code == 401
    for server in two_servers:
        response = httpx.post(f"{server.url}/auth/login", json=wrong)
        assert response.status_code == 429
        assert response.headers["ratelimit-policy"] == '"login";q=4;w=60'


@pytest.mark.e2e
async def test_websocket_connects_are_limited_locally_when_redis_is_down(
    tmp_path: Path, server_env: dict[str, str]
) -> None:
    env = {
        **server_env,
        "ORCH_DATA_DIR": str(tmp_path / "data"),
        "ORCH_RATE_LIMIT_WS_CONNECT": "3/minute",
        "ORCH_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",  # nobody listens there
    }
    server = ServerProcess(env=env, log_path=tmp_path / "server.log")
    await asyncio.to_thread(server.start, START_TIMEOUT)
    try:
        async with httpx.AsyncClient(base_url=server.url) as client:
            body = {"username": "admin", "password": "shared-limit-admin-password"}
            response = await client.post("/auth/login", json=body)
            assert response.status_code == 200
            token = response.json()["access_token"]
        statuses = [await handshake(f"{server.ws_url}/ws?token={token}") for _ in range(4)]
        # whatever /ws answers (it may not exist yet), the fourth attempt is refused
        assert all(status < 500 and status != 429 for status in statuses[:3]), statuses
        assert statuses[3] == 429
        # anonymous attempts from the same address are counted apart from the user
        assert await handshake(f"{server.ws_url}/ws") != 429
    finally:
        await asyncio.to_thread(server.stop)
    logs = server.logs()
    assert '"rate_limit_storage_unavailable"' in logs
    assert " 500" not in logs


async def handshake(url: str) -> int:
    """The HTTP status of a WebSocket handshake (101 when it opened)."""
    try:
        async with connect(url, open_timeout=5):
            return 101
    except InvalidStatus as exc:
        status: int = exc.response.status_code
        retry_after = exc.response.headers.get("Retry-After")
    if status == 429:
        assert retry_after is not None
        assert int(retry_after) >= 1
    return status
