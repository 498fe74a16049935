"""`orchestrator worker` sends a handler's log lines, and its `logging` records with
`--job-log-level`, to the job's log before the job's outcome; a real server and a worker
process, on both backends."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from orchestrator.client import Client
from tests.support.databases import create_postgres_database, drop_postgres_database
from tests.support.servers import ServerProcess
from tests.workers.processes import WorkerProcess

pytestmark = pytest.mark.e2e
ADMIN_PASSWORD = "e2e-logs-admin-password"
LINES = 250  # three appends' worth


@pytest.fixture
async def stack_db(backend: str, tmp_path: Path) -> AsyncIterator[str]:
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
            "ORCH_LOG_LEVEL": "WARNING",
        },
        log_path=tmp_path / "server.log",
    ).start(timeout=120)
    yield proc
    proc.stop()


def all_lines(client: Client, job_id: str) -> list[dict[str, object]]:
    lines: list[dict[str, object]] = []
    after = 0
    while True:
        page = client.list_job_logs(job_id, after=after, limit=100)
        lines.extend(page["items"])
        if page["next_after"] is None:
            return lines
        after = page["next_after"]


@pytest.mark.timeout(180)
async def test_a_worker_process_sends_context_lines_and_logging_records_before_the_outcome(
    server: ServerProcess, tmp_path: Path
) -> None:
    worker = WorkerProcess(
        name="chatty",
        url=server.url,
        password=ADMIN_PASSWORD,
        log_path=tmp_path / "worker.log",
        handler_log=tmp_path / "handled.log",
        lease_seconds=10,
        handler="tests.workers.handlers:chatty",
        options=("--job-log-level", "INFO"),
    ).start()
    try:
        with Client(server.url) as client:
            client.login("admin", ADMIN_PASSWORD)
            job = client.create_job("talkative", payload={"lines": LINES})
            deadline = time.monotonic() + 60
            while (body := client.get_job(job["id"]))["status"] != "succeeded":
                assert time.monotonic() < deadline, body
                await asyncio.sleep(0.05)
            # Every line was stored before the job succeeded.
            lines = all_lines(client, job["id"])
    finally:
        worker.terminate()
        worker.stop()
    assert body["result"] == {"logged": LINES}
    assert [line["n"] for line in lines] == list(range(1, len(lines) + 1))
    texts = [str(line["line"]) for line in lines]
    assert texts[:LINES] == [f"line {k}" for k in range(LINES)]
    rest = texts[LINES:]
    assert rest[0] == "INFO tests.chatty: through logging: talkative"
    assert rest[1] == "ERROR tests.chatty: caught"
    assert rest[2] == "Traceback (most recent call last):"
    assert rest[-1] == "ValueError: boom"
    assert not any("below the level" in text for text in texts)
    # The worker's own log lines stay in its output, not in the job's log.
    assert not any("claimed" in text for text in texts)
