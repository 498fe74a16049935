"""`GET /api/v1/queues` with 100,000 jobs in the database, on SQLite and on PostgreSQL.

    python bench/queue_stats.py [--jobs 100000] [--scheduled 10000] [--requests 300]
                                [--postgres postgresql://postgres@127.0.0.1:5432/postgres]

The jobs are seeded over three queues in every status (`--scheduled` of the pending ones put
off by an hour), a real server is started on them, and the route is timed from the client
over loopback (an upper bound of the server's own time), after a few warm-up calls. For
comparison, the same counts taken by scanning the jobs (`GROUP BY queue, status`, what the
route would cost without the counts the triggers keep) are timed on the database directly.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.queues import postgres_database
from bench.seed import seed_jobs
from bench.servers import ADMIN_PASSWORD, service
from orchestrator.db import open_database

STATUSES = (
    "succeeded",
    "succeeded",
    "succeeded",
    "succeeded",
    "failed",
    "cancelled",
    "pending",
    "pending",
    "running",
)


@contextlib.contextmanager
def database(kind: str, workdir: Path, admin_dsn: str) -> Iterator[str]:
    if kind == "sqlite":
        (workdir / "sqlite").mkdir(exist_ok=True)
        yield f"sqlite:///{workdir / 'sqlite' / 'orchestrator.db'}"
        return
    with postgres_database(admin_dsn, "queue_stats") as (_name, url):
        yield url


async def _prepare(url: str, scheduled: int) -> float:
    """Put `scheduled` pending jobs off by an hour; the time of a scan of the jobs (ms)."""
    db = open_database(url, timeout=120)
    try:
        later = "now() + interval '1 hour'" if db.dialect == "postgresql" else ":later"
        async with db.transaction() as tx:
            await tx.execute(
                f"UPDATE jobs SET run_after = {later} WHERE id IN (SELECT id FROM jobs "
                "WHERE status = 'pending' ORDER BY id LIMIT :n)",
                {"n": scheduled, "later": "9999-12-31T00:00:00.000000+00:00"},
            )
        scans = []
        for _ in range(5):
            started = time.perf_counter()
            await db.fetch_all("SELECT queue, status, count(*) FROM jobs GROUP BY queue, status")
            scans.append((time.perf_counter() - started) * 1000)
        return statistics.median(scans)
    finally:
        await db.close()


def measure(
    kind: str, args: argparse.Namespace, workdir: Path
) -> tuple[list[float], float, dict[str, Any]]:
    with database(kind, workdir, args.postgres) as url:
        seed_jobs(url, args.jobs, statuses=STATUSES)
        scan = asyncio.run(_prepare(url, args.scheduled))
        server = service(workdir, kind, database_url=url, extra_env={"ORCH_LOG_LEVEL": "WARNING"})
        server.launch()
        try:
            server.wait_ready()
            with httpx.Client(base_url=server.url, timeout=60) as client:
                login = client.post(
                    "/auth/login", json={"username": "admin", "password": ADMIN_PASSWORD}
                )
                login.raise_for_status()
                client.headers["Authorization"] = f"Bearer {login.json()['access_token']}"
                time.sleep(2)  # PostgreSQL: the seed's appended counts folded (every second)
                for _ in range(20):
                    client.get("/api/v1/queues").raise_for_status()
                times = []
                for _ in range(args.requests):
                    started = time.perf_counter()
                    response = client.get("/api/v1/queues")
                    times.append((time.perf_counter() - started) * 1000)
                    response.raise_for_status()
                body: dict[str, Any] = response.json()
                return times, scan, body
        finally:
            server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--scheduled", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument(
        "--postgres",
        default="postgresql://postgres@127.0.0.1:5432/postgres",
        help="admin DSN of the PostgreSQL server ('' to skip PostgreSQL)",
    )
    args = parser.parse_args()
    kinds = ["sqlite", "postgres"] if args.postgres else ["sqlite"]
    print(
        f"{args.jobs:,} jobs ({args.scheduled:,} scheduled), {args.requests} sequential "
        "GET /api/v1/queues from a client on loopback; ms"
    )
    print("| backend | p50 | p95 | max | scan of the jobs (GROUP BY), for comparison |")
    print("|---|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory(prefix="orch-queue-stats-") as tmp:
        for kind in kinds:
            workdir = Path(tmp) / kind
            workdir.mkdir()
            times, scan, body = measure(kind, args, workdir)
            times.sort()
            p95 = times[int(len(times) * 0.95) - 1]
            print(
                f"| {kind} | {statistics.median(times):.2f} | {p95:.2f} | {times[-1]:.2f} "
                f"| {scan:.1f} |",
                flush=True,
            )
            counts = {item["name"]: item["counts"] for item in body["items"]}
            print(f"<!-- {kind}: {counts} -->", flush=True)


if __name__ == "__main__":
    main()
