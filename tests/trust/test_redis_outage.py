"""Redis stopped: rate limits fall back to per-process counters and nothing answers 5xx."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
from bench.servers import Child, free_port

from tests.trust.live import admin_token, start_server

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.redis,
    pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server not installed"),
]


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[tuple[Child, str]]:
    """A throwaway Redis this test may kill."""
    port = free_port()
    proc = Child(
        "redis-server",
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(tmp_path)],
        {},
        tmp_path / "redis.log",
        tmp_path,
    ).start()  # fmt: skip
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url)
    deadline = time.monotonic() + 10
    try:
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
    finally:
        client.close()
    try:
        yield proc, url
    finally:
        proc.kill()


def _login(client: httpx.Client, username: str) -> int:
    started = time.monotonic()
    response = client.post("/auth/login", json={"username": username, "password": "wrong"})
    # Never stuck waiting for Redis (the bound leaves room for the argon2 hash on a busy box).
    assert time.monotonic() - started < 5.0
    assert response.status_code < 500, response.text
    return response.status_code


def test_redis_down_degrades_to_local_limits_without_5xx(
    redis_server: tuple[Child, str], tmp_path: Path
) -> None:
    proc, url = redis_server
    server = start_server(
        tmp_path,
        None,
        ORCH_RATE_LIMIT_ENABLED="true",
        ORCH_REDIS_URL=url,
        ORCH_RATE_LIMIT_LOGIN="3/minute",
    )
    try:
        token = admin_token(server.url)
        auth = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=server.url, timeout=10) as client:
            assert [_login(client, "victim") for _ in range(4)] == [401, 401, 401, 429]
            proc.kill()
            # Limits still hold, now counted in this process.
            statuses = [_login(client, "victim2") for _ in range(5)]
            assert statuses[:3] == [401, 401, 401]
            assert statuses[3:] == [429, 429]
            for _ in range(3):
                for response in (
                    client.get("/health"),
                    client.get("/healthz"),
                    client.get("/api/v1/jobs", headers=auth),
                    client.get("/api/v1/collab/state/tasks", headers=auth),
                    client.post("/api/v1/collab/tasks", json={"title": "t"}, headers=auth),
                    client.post("/api/v1/jobs", json={"title": "j"}, headers=auth),
                ):
                    assert response.status_code < 500, (response.request.url, response.text)
    finally:
        server.stop()
