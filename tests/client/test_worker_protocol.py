"""The Worker runner against the app in process: a busy worker makes one request per job or
fewer, and a cancellation reaches a running handler within a second."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from orchestrator.app import create_app
from orchestrator.client import AsyncClient, Worker
from orchestrator.db.migrate import upgrade
from tests.support.settings import make_settings
from tests.support.users import ADMIN_PASSWORD


class _Counted(httpx.AsyncBaseTransport):
    """The app's transport, counting requests by path."""

    def __init__(self, app: FastAPI) -> None:
        self.inner = httpx.ASGITransport(app=app)
        self.paths: Counter[str] = Counter()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.paths[request.url.path] += 1
        return await self.inner.handle_async_request(request)


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[FastAPI]:
    url = f"sqlite:///{tmp_path / 'orchestrator.db'}"
    await asyncio.to_thread(upgrade, url)
    application = create_app(make_settings(url, tmp_path / "data"))
    async with application.router.lifespan_context(application):
        yield application


async def _until(check: Callable[[], bool | Awaitable[bool]], within: float = 20.0) -> None:
    deadline = time.monotonic() + within
    while True:
        met = check()
        if met if isinstance(met, bool) else await met:
            return
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def test_a_busy_worker_makes_one_request_per_job_or_fewer(app: FastAPI) -> None:
    transport = _Counted(app)
    done: list[str] = []

    async def handle(job: dict[str, Any]) -> int:
        done.append(job["id"])
        return len(done)

    async with AsyncClient("http://127.0.0.1", transport=transport) as client:
        await client.login("admin", ADMIN_PASSWORD)
        jobs = [(await client.create_job(f"j{n}", queue="busy"))["id"] for n in range(60)]
        transport.paths.clear()
        worker = Worker(client, ["busy"], handle, concurrency=8, wait=0.5)
        running = asyncio.create_task(worker.run(install_signal_handlers=False))
        try:

            async def all_succeeded() -> bool:
                listed = await client.list_jobs(queue="busy", status="succeeded")
                return len(listed["jobs"]) == len(jobs)

            await _until(all_succeeded)
        finally:
            worker.stop()
            await asyncio.wait_for(running, 10)
    assert sorted(done) == sorted(jobs)
    # Claims and reports (the list calls above are the test's own).
    worker_calls = transport.paths["/api/v1/jobs/claim"] + transport.paths["/api/v1/jobs/report"]
    assert worker_calls <= len(jobs), transport.paths
    assert sum(n for path, n in transport.paths.items() if path.endswith("/complete")) == 0


async def test_a_cancellation_reaches_a_running_handler_within_a_second(app: FastAPI) -> None:
    started = asyncio.Event()
    interrupted: list[float] = []

    async def handle(job: dict[str, Any]) -> None:
        started.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            interrupted.append(time.monotonic())
            raise

    async with AsyncClient("http://127.0.0.1", transport=httpx.ASGITransport(app=app)) as client:
        await client.login("admin", ADMIN_PASSWORD)
        # A long lease: the heartbeat that carries the news is not the lease's own.
        worker = Worker(client, ["slow"], handle, lease_seconds=60, wait=0.5)
        running = asyncio.create_task(worker.run(install_signal_handlers=False))
        try:
            for _ in range(3):
                job = await client.create_job("slow", queue="slow")
                await asyncio.wait_for(started.wait(), 10)
                started.clear()
                await asyncio.sleep(0.3)  # well into the handler (and its lease)
                asked = time.monotonic()
                await client.cancel_job(job["id"])
                await _until(lambda: len(interrupted) == 1)
                assert interrupted.pop() - asked < 1.0

                async def cancelled(job_id: str = job["id"]) -> bool:
                    return bool((await client.get_job(job_id))["status"] == "cancelled")

                await _until(cancelled)
        finally:
            worker.stop()
            await asyncio.wait_for(running, 10)
