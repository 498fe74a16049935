"""PostgreSQL outages: 503 in the envelope within 2 s, liveness unaffected, recovery within
5 s without a restart. The database is a throwaway cluster this module owns."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from websockets.sync.client import connect as ws_connect

from tests.support.servers import ServerProcess
from tests.support.users import ADMIN_PASSWORD
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
    # The production database timeout: the 503s are promised within 2 s.
    proc = start_server(
        tmp_path_factory.mktemp("outage"), cluster.url, ORCH_DB_TIMEOUT_SECONDS="1.5"
    )
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


def test_a_postgres_restart_under_traffic_is_clean(
    cluster: pgcluster.PgCluster, server: ServerProcess
) -> None:
    """No traceback and no 500 while PostgreSQL restarts (a 503 is the truth meanwhile), and
    live changes flow again after."""
    started = datetime.now(UTC).isoformat()
    with httpx.Client(base_url=server.url, timeout=10) as client:
        token = client.post("/auth/login", json=LOGIN).json()["access_token"]
        auth = {"Authorization": f"Bearer {token}"}
        stop = threading.Event()

        def traffic() -> None:
            with httpx.Client(base_url=server.url, timeout=10) as own:
                while not stop.is_set():
                    own.get("/api/v1/jobs", headers=auth)
                    own.post("/api/v1/collab/tasks", headers=auth, json={"title": "load"})

        workers = [threading.Thread(target=traffic) for _ in range(4)]
        for worker in workers:
            worker.start()
        try:
            with ws_connect(f"{server.ws_url}/ws", additional_headers=auth) as ws:
                ws.recv(timeout=10)
                ws.send('{"type": "subscribe", "collections": ["tasks"]}')
                for _ in range(2):
                    time.sleep(0.5)
                    cluster.stop("fast")
                    time.sleep(0.5)
                    cluster.start()
                _first_success_within(client, 5.0)
                stop.set()
                created = client.post("/api/v1/collab/tasks", headers=auth, json={"title": "after"})
                assert created.status_code == 201, created.text
                deadline = time.monotonic() + 10
                while time.monotonic() < deadline:
                    frame = json.loads(ws.recv(timeout=10))
                    if frame.get("type") == "change" and frame["id"] == created.json()["id"]:
                        break
                else:
                    raise AssertionError("the change after the restart never arrived")
        finally:
            stop.set()
            for worker in workers:
                worker.join()
    errors = []
    for line in server.logs().splitlines():
        if not line.startswith("{") or "Traceback" in line:
            errors.append(line)
            continue
        entry = json.loads(line)
        if entry.get("timestamp", "") < started or entry.get("level") not in ("error", "critical"):
            continue
        if entry.get("logger") != "orchestrator.access" or entry.get("status") != 503:
            errors.append(line)
    assert errors == [], errors[:3]
