"""`orchestrator worker` against a real server: how it stops, and what it says when it does."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from orchestrator.auth.api_keys import create_api_key
from orchestrator.auth.users import get_user
from orchestrator.client import Client
from orchestrator.db import open_database
from tests.cli_runner import run_cli
from tests.support.servers import ServerProcess, free_port
from tests.workers.processes import WorkerProcess

pytestmark = pytest.mark.e2e
ADMIN_PASSWORD = "worker-exit-admin-password"
USER_PASSWORD = "worker-exit-user-password"


def _env(tmp_path: Path) -> dict[str, str]:
    return {
        "ORCH_DATA_DIR": str(tmp_path / "data"),
        "ORCH_ADMIN_PASSWORD": ADMIN_PASSWORD,
        "ORCH_LOG_LEVEL": "WARNING",
        "ORCH_CHANGE_POLL_SECONDS": "0.2",
        "ORCH_LEASE_SWEEP_SECONDS": "0.2",
    }


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    proc = ServerProcess(env=_env(tmp_path), log_path=tmp_path / "server.log").start(timeout=120)
    yield proc
    proc.stop()


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[list[WorkerProcess]]:
    started: list[WorkerProcess] = []
    yield started
    for worker in started:
        worker.stop()


def _worker(
    tmp_path: Path,
    url: str,
    *,
    username: str = "admin",
    password: str = ADMIN_PASSWORD,
    wait: float = 1,
    grace: float = 5,
    lease_seconds: float = 3,
) -> WorkerProcess:
    return WorkerProcess(
        name=f"w-{username}",
        url=url,
        password=password,
        log_path=tmp_path / f"worker-{username}.log",
        handler_log=tmp_path / "handled.log",
        username=username,
        wait=wait,
        grace=grace,
        lease_seconds=lease_seconds,
    )


def _user(tmp_path: Path, name: str, role: str) -> None:
    done = run_cli(
        "users", "create", name, "--role", role, env=_env(tmp_path), password=USER_PASSWORD
    )
    assert done.returncode == 0, done.stderr


def _exit_status(worker: WorkerProcess, within: float = 30) -> int:
    assert worker.process is not None
    try:
        return worker.process.wait(within)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the worker did not exit within {within}s:\n{worker.logs()[-2000:]}")


def _last_line(worker: WorkerProcess) -> str:
    logs = worker.logs()
    assert "Traceback" not in logs, logs[-3000:]
    return logs.strip().splitlines()[-1]


def _until(check: Callable[[], bool], within: float = 30) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def _claims_waiting(server: ServerProcess) -> int:
    """Requests in flight besides this scrape: the worker's waiting claims."""
    text = httpx.get(f"{server.url}/metrics", timeout=5).text
    line = next(x for x in text.splitlines() if x.startswith("orch_http_requests_in_flight "))
    return int(float(line.split()[1])) - 1


def test_no_server_at_the_url_stops_the_worker_with_one_line(
    tmp_path: Path, workers: list[WorkerProcess]
) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    worker = _worker(tmp_path, url).start()
    workers.append(worker)
    assert _exit_status(worker) == 1
    assert _last_line(worker) == (
        f"orchestrator: no server at {url}: no server answers (connection refused)"
    )


def test_sigterm_while_the_worker_logs_in_ends_it_at_once_with_status_zero(
    tmp_path: Path, workers: list[WorkerProcess]
) -> None:
    """A stop during start-up (a server slow to answer the login) is a clean exit, not death
    by the signal."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.settimeout(60)
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        worker = _worker(tmp_path, url).start()
        workers.append(worker)
        connection, _ = listener.accept()  # the login is on its way and will get no answer
        with connection:
            worker.terminate()
            assert _exit_status(worker, within=10) == 0, worker.logs()[-2000:]
    assert "Traceback" not in worker.logs()


def test_without_url_the_worker_goes_where_serve_listens_and_orch_url_overrides_that(
    tmp_path: Path, workers: list[WorkerProcess]
) -> None:
    port = free_port()
    by_host_and_port = _worker(tmp_path, "")
    by_host_and_port.env = {"ORCH_HOST": "0.0.0.0", "ORCH_PORT": str(port)}  # noqa: S104
    workers.append(by_host_and_port.start())
    by_url = _worker(tmp_path, "", username="other")
    by_url.env = {"ORCH_URL": f"http://localhost:{port}", "ORCH_PORT": "1"}
    workers.append(by_url.start())
    assert _exit_status(by_host_and_port) == 1
    assert _last_line(by_host_and_port).startswith(
        f"orchestrator: no server at http://127.0.0.1:{port}:"
    )
    assert _exit_status(by_url) == 1
    assert _last_line(by_url).startswith(f"orchestrator: no server at http://localhost:{port}:")


def test_an_account_without_the_worker_role_stops_the_worker_with_one_line(
    server: ServerProcess, tmp_path: Path, workers: list[WorkerProcess]
) -> None:
    _user(tmp_path, "watcher", "viewer")
    worker = _worker(tmp_path, server.url, username="watcher", password=USER_PASSWORD).start()
    workers.append(worker)
    assert _exit_status(worker) == 1
    line = _last_line(worker)
    assert line.startswith("orchestrator: worker stopped: this account may not run jobs (403 ")
    assert "worker or admin role" in line
    assert USER_PASSWORD not in worker.logs()


def test_a_disabled_account_stops_the_worker_with_one_line(
    server: ServerProcess, tmp_path: Path, workers: list[WorkerProcess]
) -> None:
    _user(tmp_path, "robot", "worker")
    worker = _worker(tmp_path, server.url, username="robot", password=USER_PASSWORD).start()
    workers.append(worker)
    _until(lambda: "started on queues" in worker.logs())
    done = run_cli("users", "disable", "robot", env=_env(tmp_path))
    assert done.returncode == 0, done.stderr
    assert _exit_status(worker) == 1
    assert _last_line(worker).startswith(
        "orchestrator: worker stopped: the server no longer accepts this account (401 "
    )


def test_sigterm_on_an_idle_worker_exits_within_a_second_and_leaves_no_claim_behind(
    server: ServerProcess, tmp_path: Path, workers: list[WorkerProcess]
) -> None:
    worker = _worker(tmp_path, server.url, wait=20).start()
    workers.append(worker)
    _until(lambda: "started on queues" in worker.logs())
    _until(lambda: _claims_waiting(server) == 1)  # its claim waits for work on the server
    worker.terminate()
    terminated = time.monotonic()
    assert _exit_status(worker) == 0, worker.logs()[-2000:]
    assert time.monotonic() - terminated < 1.0
    # The server stops waiting for the departed worker (its claim asked for 20 s), so the
    # next job is not leased to a client that will never hear of it.
    _until(lambda: _claims_waiting(server) == 0, within=5)
    with Client(server.url) as client:
        client.login("admin", ADMIN_PASSWORD)
        job = client.create_job("after the worker left")
        claimed = client.claim(["default"], wait=0)
        assert claimed is not None
        assert claimed.id == job["id"]
        assert claimed.job["attempts"] == 1


def test_sigterm_on_a_busy_worker_releases_its_job_after_the_grace(
    server: ServerProcess, tmp_path: Path, workers: list[WorkerProcess]
) -> None:
    worker = _worker(tmp_path, server.url, grace=1, lease_seconds=30).start()
    workers.append(worker)
    with Client(server.url) as client:
        client.login("admin", ADMIN_PASSWORD)
        job = client.create_job("stuck", payload={"gate": str(tmp_path / "never")})
        _until(lambda: client.get_job(job["id"])["status"] == "running")
        worker.terminate()
        assert _exit_status(worker, within=15) == 0, worker.logs()[-2000:]
        released = client.get_job(job["id"])
    assert released["status"] == "pending"
    assert released["attempts"] == 0  # a release does not count the attempt
    assert f"job {job['id']} released at shutdown" in worker.logs()


def test_a_server_gone_mid_run_is_said_once_and_work_resumes_when_it_returns(
    server: ServerProcess, tmp_path: Path, workers: list[WorkerProcess]
) -> None:
    worker = _worker(tmp_path, server.url).start()
    workers.append(worker)
    _until(lambda: "started on queues" in worker.logs())
    server.stop()
    _until(lambda: "server unavailable" in worker.logs())
    back = ServerProcess(env=_env(tmp_path), log_path=tmp_path / "server2.log", port=server.port)
    back.start(timeout=120)
    try:
        with Client(back.url) as client:
            client.login("admin", ADMIN_PASSWORD)
            job = client.create_job("after the outage")
            _until(lambda: client.get_job(job["id"])["status"] == "succeeded", within=60)
        logs = worker.logs()
    finally:
        back.stop()
    assert logs.count("server unavailable") == 1, logs[-3000:]
    assert "server answers again" in logs
    assert worker.process is not None
    assert worker.process.poll() is None


async def _api_key(database_url: str) -> str:
    """A new API key of the admin account, written where the server reads it."""
    db = open_database(database_url, timeout=5)
    try:
        admin = await get_user(db, username="admin")
        assert admin is not None
        _key, secret = await create_api_key(
            db, user_id=admin.id, username="admin", name="worker", read_only=False,
            expires_in_days=1,
        )  # fmt: skip
    finally:
        await db.close()
    return secret


def test_a_worker_with_an_api_key_needs_no_password_and_a_wrong_key_stops_it(
    tmp_path: Path, workers: list[WorkerProcess]
) -> None:
    database_url = f"sqlite:///{tmp_path / 'data' / 'orchestrator.db'}"
    env = {**_env(tmp_path), "ORCH_DATABASE_URL": database_url}
    server = ServerProcess(env=env, log_path=tmp_path / "server.log").start(timeout=120)
    try:
        key = asyncio.run(_api_key(database_url))
        keyed = _worker(tmp_path, server.url, username="", password="")
        keyed.env = {"ORCH_API_KEY": key}
        workers.append(keyed.start())
        wrong = _worker(tmp_path, server.url, username="", password="")
        wrong.name, wrong.log_path = "w-wrong", tmp_path / "worker-wrong.log"
        wrong.env = {"ORCH_API_KEY": "orch_" + "x" * 43 + "_abcdef"}
        workers.append(wrong.start())
        with Client(server.url, api_key=key) as client:
            job = client.create_job("keyed")
            _until(lambda: client.get_job(job["id"])["status"] == "succeeded", within=60)
        assert _exit_status(wrong) == 1
        assert _last_line(wrong).startswith(
            f"orchestrator: the API key at {server.url} failed: 401"
        )
        assert key not in keyed.logs() + wrong.logs() + server.logs()
    finally:
        server.stop()
