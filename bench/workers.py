"""Jobs per second (claim + complete) with 4 workers, next to the task-create rate, one run.

Starts one real `orchestrator serve` process (SQLite by default), then from this process:
4 concurrent clients create tasks (POST /api/v1/collab/tasks), and 4 SDK workers claim and
complete pre-created jobs. A job costs a claim and a complete (two writes); a task one write.

    .venv/bin/python bench/workers.py [--jobs 2000] [--tasks 2000] [--database-url postgresql://…]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `python bench/workers.py`

import argparse
import asyncio
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from bench.servers import SERVE, Server
from orchestrator.client import AsyncClient

PASSWORD = "bench-admin-password"
WORKERS = 4


def start_server(directory: Path, database_url: str | None) -> Server:
    env = {
        "ORCH_DATA_DIR": str(directory),
        "ORCH_ADMIN_PASSWORD": PASSWORD,
        "ORCH_LOG_LEVEL": "WARNING",
        "ORCH_RATE_LIMIT_ENABLED": "false",
        "ORCH_ENVIRONMENT": "test",
    }
    if database_url:
        env["ORCH_DATABASE_URL"] = database_url
    server = Server("server", SERVE, env, directory / "server.log", cwd=directory)
    return server.start()


async def client(url: str) -> AsyncClient:
    c = AsyncClient(url, timeout=30)
    await c.login("admin", PASSWORD)
    return c


Work = Callable[[AsyncClient, int], Awaitable[None]]


async def split(url: str, total: int, work: Work) -> None:
    """Run `work(client, count)` on WORKERS clients sharing `total` units."""
    clients = [await client(url) for _ in range(WORKERS)]
    try:
        shares = [total // WORKERS + (i < total % WORKERS) for i in range(WORKERS)]
        await asyncio.gather(*(work(c, n) for c, n in zip(clients, shares, strict=True)))
    finally:
        for c in clients:
            await c.aclose()


async def create_tasks(c: AsyncClient, count: int) -> None:
    for n in range(count):
        await c.create_task(f"task {n}")


async def create_jobs(c: AsyncClient, count: int) -> None:
    for n in range(count):
        await c.create_job(f"job {n}", queue="bench", payload={"n": n})


async def work_jobs(c: AsyncClient, _count: int) -> None:
    while True:
        claimed = await c.claim(["bench"], lease_seconds=30, worker="bench")
        if claimed is None:
            return
        await c.complete(claimed.id, claimed.token, {"ok": True})


async def timed(url: str, total: int, work: Work) -> float:
    started = time.perf_counter()
    await split(url, total, work)
    return total / (time.perf_counter() - started)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--database-url")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        server = start_server(Path(tmp), args.database_url)
        url = server.url
        try:
            task_rate = await timed(url, args.tasks, create_tasks)
            await split(url, args.jobs, create_jobs)
            job_rate = await timed(url, args.jobs, work_jobs)
        finally:
            server.stop()
    backend = "postgresql" if args.database_url else "sqlite"
    print(f"backend: {backend}, one server process, {WORKERS} concurrent clients")
    print(
        f"tasks created:            {task_rate:8.1f} /s  ({args.tasks} POST /api/v1/collab/tasks)"
    )
    print(f"jobs claimed + completed: {job_rate:8.1f} /s  ({args.jobs} jobs, {WORKERS} workers)")
    print(f"jobs / tasks:             {job_rate / task_rate:8.1%}  (goal >= 35%)")


if __name__ == "__main__":
    asyncio.run(main())
