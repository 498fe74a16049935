"""Crash durability: SIGKILL at named fault points and at random, on SQLite and on a
PostgreSQL cluster that is itself crashed (`pg_ctl stop -m immediate`) each time."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.support.servers import ServerProcess
from tests.trust import pgcluster
from tests.trust.history import TASKS, History, check, read_stored
from tests.trust.live import admin_token, start_server

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

# CI runs 20 (the figure); a local run may ask for fewer.
RANDOM_CYCLES = int(os.environ.get("ORCH_TEST_CRASH_CYCLES", "20"))
MAX_WRITES_PER_CYCLE = 25


@dataclass
class Target:
    """A backend that survives server restarts, and can itself be crashed."""

    backend: str
    url: str
    root: Path
    cluster: pgcluster.PgCluster | None = None

    def crash_database(self) -> None:
        if self.cluster is not None:
            self.cluster.crash()
            self.cluster.start()

    def start(self, **faults: str) -> ServerProcess:
        env = {f"ORCH_FAULT_{name.upper()}": value for name, value in faults.items()}
        return start_server(self.root, self.url, **env)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Target]:
    if request.param == "sqlite":
        yield Target("sqlite", f"sqlite:///{tmp_path / 'data' / 'orchestrator.db'}", tmp_path)
        return
    if not pgcluster.available():
        pytest.skip("initdb/pg_ctl not installed")
    cluster = pgcluster.PgCluster().init()
    cluster.start()
    try:
        yield Target("postgres", cluster.url, tmp_path, cluster)
    finally:
        cluster.destroy()


def _client(server: ServerProcess) -> httpx.Client:
    token = admin_token(server.url)
    paths = httpx.get(f"{server.url}/openapi.json", timeout=30).json()["paths"]
    if TASKS not in paths:
        server.stop()
        pytest.skip(f"{TASKS} is not served yet (jobs/tasks not merged)")
    return httpx.Client(
        base_url=server.url, headers={"Authorization": f"Bearer {token}"}, timeout=30
    )


def _wait_dead(server: ServerProcess) -> int:
    assert server.process is not None
    try:
        return server.process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        server.kill()
        raise AssertionError("the fault point never fired") from None


def _settle(target: Target, history: History) -> None:
    """Restart without faults, check, retry what was never answered, check again."""
    server = target.start()
    try:
        check(history, read_stored(target.backend, target.url), settled=False)
        with _client(server) as client:
            history.retry_unknown(client)
        check(history, read_stored(target.backend, target.url), settled=True)
    finally:
        server.stop()


@pytest.mark.parametrize(
    "point", ["before_commit", "after_commit_before_response", "after_commit_before_publish"]
)
def test_kill_at_fault_point_loses_nothing_acknowledged(target: Target, point: str) -> None:
    history = History()
    server = target.start(point=point, after="2")
    with _client(server) as client:
        for i in range(10):
            write = history.attempt(client, valid=i % 3 != 1)
            if write.outcome == "unknown":
                break
    assert _wait_dead(server) == -9
    assert f"fault point reached: {point}" in server.logs()
    unknown = [w for w in history.writes if w.outcome == "unknown"]
    assert len(unknown) == 1
    target.crash_database()
    stored = read_stored(target.backend, target.url) if target.backend == "sqlite" else None
    if stored is not None:
        committed = stored.tasks_by_marker.get(unknown[0].marker, [])
        assert len(committed) == (0 if point == "before_commit" else 1)
    _settle(target, history)


@pytest.mark.timeout(900)
def test_random_kills_lose_nothing_acknowledged(target: Target) -> None:
    history = History()
    kills = 0
    for cycle in range(RANDOM_CYCLES):
        server = target.start(point="random", probability="0.15", seed=str(cycle))
        try:
            with _client(server) as client:
                history.retry_unknown(client)
                for i in range(MAX_WRITES_PER_CYCLE):
                    if history.attempt(client, valid=i % 4 != 3).outcome == "unknown":
                        break
        except httpx.TransportError:
            pass  # died while logging in or retrying: the same kind of crash
        if server.process is not None and server.process.poll() is None:
            deadline = time.monotonic() + 2
            while server.process.poll() is None and time.monotonic() < deadline:
                time.sleep(0.02)
        if server.process is not None and server.process.poll() is None:
            server.stop()  # no fault drawn this cycle
        else:
            kills += 1
            assert _wait_dead(server) == -9
        target.crash_database()
        check(history, read_stored(target.backend, target.url), settled=False)
    assert kills >= RANDOM_CYCLES // 2, kills
    _settle(target, history)
