"""Real server and `orchestrator worker` processes: exactly once, crashes, stalls, cancels."""

from __future__ import annotations

import signal
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from orchestrator.db import Database, open_database
from tests.support.databases import create_postgres_database, drop_postgres_database
from tests.support.jobs import make_jobs
from tests.support.servers import ServerProcess
from tests.workers.processes import WorkerProcess

pytestmark = pytest.mark.e2e
ADMIN_PASSWORD = "e2e-worker-admin-password"


@pytest.fixture
async def stack_db(backend: str, tmp_path: Path) -> AsyncIterator[str]:
    """A database URL for the server (it migrates the database itself)."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'data' / 'orchestrator.db'}"
        return
    url = await create_postgres_database()
    try:
        yield url
    finally:
        await drop_postgres_database(url)


@pytest.fixture
def server(stack_db: str, tmp_path: Path) -> Iterator[ServerProcess]:
    proc = ServerProcess(
        env={
            "ORCH_DATA_DIR": str(tmp_path / "data"),
            "ORCH_DATABASE_URL": stack_db,
            "ORCH_ADMIN_PASSWORD": ADMIN_PASSWORD,
            "ORCH_LEASE_SWEEP_SECONDS": "0.2",
            "ORCH_CHANGE_POLL_SECONDS": "0.2",
            "ORCH_LOG_LEVEL": "WARNING",
            "ORCH_RATE_LIMIT_ENABLED": "false",
        },
        log_path=tmp_path / "server.log",
    ).start(timeout=120)
    yield proc
    proc.stop()


@pytest.fixture
async def db(server: ServerProcess, stack_db: str) -> AsyncIterator[Database]:
    database = open_database(stack_db, timeout=5)
    yield database
    await database.close()


@pytest.fixture
def spawn(server: ServerProcess, tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    started: list[WorkerProcess] = []

    def start(name: str, lease_seconds: float = 3, **options: Any) -> WorkerProcess:
        worker = WorkerProcess(
            name=name,
            url=server.url,
            password=ADMIN_PASSWORD,
            log_path=tmp_path / f"worker-{name}.log",
            handler_log=tmp_path / "handled.log",
            lease_seconds=lease_seconds,
            **options,
        ).start()
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.terminate()
    for worker in started:
        worker.stop()


async def job(db: Database, job_id: str) -> dict[str, Any]:
    row = await db.fetch_one(
        "SELECT status, attempts, result, error, worker FROM jobs WHERE id = :id", {"id": job_id}
    )
    assert row is not None
    return {**row, "result": orjson.loads(row["result"]) if row["result"] else None}


async def until(check: Callable[[], Any], within: float = 60.0) -> None:
    import asyncio

    deadline = time.monotonic() + within
    while not await check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


def handled(tmp_path: Path) -> list[tuple[str, int]]:
    path = tmp_path / "handled.log"
    lines = path.read_text().split() if path.exists() else []
    return [(lines[i], int(lines[i + 1])) for i in range(0, len(lines), 2)]


async def test_four_workers_complete_a_thousand_jobs_exactly_once(
    db: Database, spawn: Callable[..., WorkerProcess], tmp_path: Path
) -> None:
    ids = await make_jobs(db, 1000, payload={"n": 1})
    workers = [spawn(f"w{n}", lease_seconds=10) for n in range(4)]

    async def all_done() -> bool:
        row = await db.fetch_one("SELECT count(*) AS n FROM jobs WHERE status = 'succeeded'")
        return row is not None and int(row["n"]) == 1000

    async def all_working() -> bool:
        return all("started on queues" in worker.logs() for worker in workers)

    await until(all_done, within=150)
    # A loaded machine can drain the queue before the last worker is past its imports; the
    # stop checked here is a working worker's.
    await until(all_working, within=60)
    for worker in workers:
        worker.terminate()
    for worker in workers:
        assert worker.stop() == 0, worker.logs()[-2000:]
    calls = Counter(job_id for job_id, _pid in handled(tmp_path))
    assert set(calls) == set(ids)
    assert set(calls.values()) == {1}
    rows = await db.fetch_all("SELECT attempts, result FROM jobs")
    assert {int(r["attempts"]) for r in rows} == {1}
    pids = {orjson.loads(r["result"])["pid"] for r in rows}
    assert pids <= {w.pid for w in workers}


async def _worker_requests(server: ServerProcess) -> Counter[str]:
    """The worker calls the server has answered so far, by route."""
    async with httpx.AsyncClient(base_url=server.url) as http:
        text = (await http.get("/metrics")).text
    counts: Counter[str] = Counter()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            route = sample.labels.get("route", "")
            if sample.name == "orch_http_requests_total" and route.startswith("/api/v1/jobs"):
                counts[route] += int(sample.value)
    return counts


async def test_a_busy_worker_reports_jobs_finishing_close_together_in_one_request(
    db: Database, server: ServerProcess, spawn: Callable[..., WorkerProcess], tmp_path: Path
) -> None:
    # Each claim of 8 takes jobs that run 0, 2, ... 14 ms: they finish apart, not at once.
    ids = [(await make_jobs(db, payload={"ms": n % 8 * 2}))[0] for n in range(96)]
    worker = spawn(
        "busy", lease_seconds=10, concurrency=8, handler="tests.workers.handlers:staggered"
    )

    async def all_done() -> bool:
        row = await db.fetch_one("SELECT count(*) AS n FROM jobs WHERE status = 'succeeded'")
        return row is not None and int(row["n"]) == len(ids)

    await until(all_done)
    calls = await _worker_requests(server)
    worker.terminate()
    assert worker.stop() == 0, worker.logs()[-2000:]
    assert sorted(job_id for job_id, _pid in handled(tmp_path)) == sorted(ids)
    # Claims and reports together: about one request per several jobs, none per job.
    assert calls["/api/v1/jobs/claim"] + calls["/api/v1/jobs/report"] <= len(ids) / 2, calls
    assert not any(route.endswith(("/complete", "/fail")) for route in calls), calls


async def test_crashed_stalled_and_cancelled_workers(
    db: Database, server: ServerProcess, spawn: Callable[..., WorkerProcess], tmp_path: Path
) -> None:
    # SIGKILL mid-job: the job is leased again once the lease expires, and succeeds once.
    first = spawn("killed")
    [crashed] = await make_jobs(db, payload={"gate": str(tmp_path / "never")})

    async def running(job_id: str) -> bool:
        return str((await job(db, job_id))["status"]) == "running"

    await until(lambda: running(crashed))
    first.signal(signal.SIGKILL)
    killed_at = time.monotonic()
    second = spawn("second")

    async def succeeded(job_id: str) -> bool:
        return str((await job(db, job_id))["status"]) == "succeeded"

    await until(lambda: succeeded(crashed))
    assert time.monotonic() - killed_at < 30
    row = await job(db, crashed)
    assert row["attempts"] == 2
    assert row["result"]["pid"] == second.pid
    assert [entry for entry in handled(tmp_path) if entry[0] == crashed] == [(crashed, second.pid)]

    # SIGSTOP past the lease: another worker takes over; the first one's reports get 409.
    gate = tmp_path / "gate"
    [stalled] = await make_jobs(db, payload={"gate": str(gate)})
    await until(lambda: running(stalled))
    assert (await job(db, stalled))["worker"] == "second"
    second.signal(signal.SIGSTOP)
    third = spawn("third")
    await until(lambda: succeeded(stalled))
    second.signal(signal.SIGCONT)
    await until(lambda: _logged(second, f"job {stalled}: heartbeat refused (409)"))
    gate.touch()
    await until(lambda: _logged(second, f"job {stalled}: complete refused (409)"))
    row = await job(db, stalled)
    assert row["status"] == "succeeded"
    assert row["result"]["pid"] == third.pid
    assert row["attempts"] == 2

    # Cancelling a running job: the worker sees it in its heartbeat answer and stops.
    [cancelled] = await make_jobs(db, payload={"gate": str(tmp_path / "later")})
    await until(lambda: running(cancelled))
    async with httpx.AsyncClient(base_url=server.url) as http:
        token = (
            await http.post("/auth/login", json={"username": "admin", "password": ADMIN_PASSWORD})
        ).json()["access_token"]
        answer = await http.post(
            f"/api/v1/jobs/{cancelled}/cancel", headers={"Authorization": f"Bearer {token}"}
        )
    assert answer.status_code == 202

    async def is_cancelled() -> bool:
        return str((await job(db, cancelled))["status"]) == "cancelled"

    await until(is_cancelled)
    assert (await job(db, cancelled))["error"] == "cancelled"  # reported by the worker
    (tmp_path / "later").touch()
    for worker in (second, third):
        worker.terminate()
    for worker in (second, third):
        assert worker.stop() == 0, worker.logs()[-2000:]
    assert ADMIN_PASSWORD not in second.logs() + third.logs() + server.logs()


async def _logged(worker: WorkerProcess, text: str) -> bool:
    return text in worker.logs()
