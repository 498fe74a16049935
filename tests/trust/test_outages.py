"""PostgreSQL outages: 503 in the envelope within 2 s, liveness unaffected, recovery within
5 s without a restart. The database is a throwaway cluster this module owns."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.factories import ADMIN_PASSWORD
from tests.server import ServerProcess
from tests.trust import pgcluster
from tests.trust.live import start_server

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.postgres,
    pytest.mark.skipif(not pgcluster.available(), reason="initdb/pg_ctl not installed"),
]

LOGIN = {"username": "admin", "password": ADMIN_PASSWORD}


@pytest.fixture(scope="module")
def cluster() -> Iterator[pgcluster.PgCluster]:
    pg = pgcluster.PgCluster().init()
    pg.start()
    try:
        yield pg
    finally:
        pg.destroy()


@pytest.fixture(scope="module")
def server(
    cluster: pgcluster.PgCluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    proc = start_server(tmp_path_factory.mktemp("outage"), cluster.url)
    try:
        yield proc
    finally:
        proc.stop()


def _db_requests(client: httpx.Client, token: str) -> list[Callable[[], httpx.Response]]:
    """Requests that cannot be answered without the database."""
    auth = {"Authorization": f"Bearer {token}"}
    spec = client.get("/openapi.json").json()
    reads = [
        path
        for path, item in spec["paths"].items()
        if "get" in item
        and path.startswith("/api/v1/")
        and "{" not in path
        and not path.endswith(("/health", "/healthz", "/changes"))
    ]
    calls: list[Callable[[], httpx.Response]] = [lambda: client.post("/auth/login", json=LOGIN)]
    calls += [lambda path=path: client.get(path, headers=auth) for path in reads]  # type: ignore[misc]
    return calls


def _assert_unavailable_fast(
    client: httpx.Client, calls: list[Callable[[], httpx.Response]]
) -> None:
    for call in calls:
        started = time.monotonic()
        response = call()
        elapsed = time.monotonic() - started
        assert response.status_code == 503, response.text
        assert response.json()["error"]["code"] == 503
        assert elapsed < 2.0, f"{response.request.url} took {elapsed:.2f}s"
    assert client.get("/health").status_code == 200
    started = time.monotonic()
    healthz = client.get("/healthz")
    assert healthz.status_code == 500
    assert healthz.json()["error"]["code"] == 500
    assert time.monotonic() - started < 2.0


def _first_success_within(client: httpx.Client, seconds: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        if client.post("/auth/login", json=LOGIN).status_code == 200:
            return time.monotonic() - started
        time.sleep(0.05)
    raise AssertionError(f"no success within {seconds}s of recovery")


def test_postgres_stopped_gives_503_then_recovers(
    cluster: pgcluster.PgCluster, server: ServerProcess
) -> None:
    with httpx.Client(base_url=server.url, timeout=10) as client:
        token = client.post("/auth/login", json=LOGIN).json()["access_token"]
        calls = _db_requests(client, token)
        cluster.stop("immediate")
        try:
            for _ in range(3):  # and again, once the pool has noticed
                _assert_unavailable_fast(client, calls)
        finally:
            cluster.start()
        _first_success_within(client, 5.0)
        assert client.get("/healthz").status_code == 200


def test_postgres_hung_gives_503_then_recovers(
    cluster: pgcluster.PgCluster, server: ServerProcess, tmp_path: Path
) -> None:
    with httpx.Client(base_url=server.url, timeout=10) as client:
        token = client.post("/auth/login", json=LOGIN).json()["access_token"]
        calls = _db_requests(client, token)
        pids = cluster.hang()
        try:
            for _ in range(3):
                _assert_unavailable_fast(client, calls)
        finally:
            cluster.resume(pids)
        _first_success_within(client, 5.0)
        assert client.get("/healthz").status_code == 200
