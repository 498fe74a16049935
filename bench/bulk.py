"""Bulk actions on 10,000 jobs: one `POST /api/v1/jobs/bulk` call each for cancel, retry and
delete, against a real server on SQLite and on PostgreSQL.

    python bench/bulk.py [--jobs 10000] [--postgres postgresql://postgres@127.0.0.1:5432/postgres]

The jobs are seeded pending; cancel then moves every one, retry brings every one back (by a
filter, then again naming all 10,000 ids in the body), and delete removes them: each call
changes all of them and logs one change per job.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.queues import postgres_database
from bench.seed import seed_jobs
from bench.servers import ADMIN_PASSWORD, service

# (action, filter): None selects every job by its id instead, all 10,000 in the body.
ACTIONS: tuple[tuple[str, dict[str, str] | None], ...] = (
    ("cancel", {"status": "pending"}),
    ("retry", {"status": "cancelled"}),
    ("cancel", None),
    ("retry", None),
    ("delete", {}),
)


@contextlib.contextmanager
def database(kind: str, workdir: Path, admin_dsn: str) -> Iterator[str]:
    if kind == "sqlite":
        yield f"sqlite:///{workdir / 'sqlite' / 'orchestrator.db'}"
        return
    with postgres_database(admin_dsn, "bulk") as (_name, url):
        yield url


def measure(kind: str, jobs: int, workdir: Path, admin_dsn: str) -> list[tuple[str, int, float]]:
    with database(kind, workdir, admin_dsn) as url:
        (workdir / "sqlite").mkdir(exist_ok=True)
        seed_jobs(url, jobs, statuses=("pending",))
        server = service(workdir, kind, database_url=url, extra_env={"ORCH_LOG_LEVEL": "WARNING"})
        server.launch()
        try:
            server.wait_ready()
            with httpx.Client(base_url=server.url, timeout=120) as client:
                login = client.post(
                    "/auth/login", json={"username": "admin", "password": ADMIN_PASSWORD}
                )
                login.raise_for_status()
                client.headers["Authorization"] = f"Bearer {login.json()['access_token']}"
                listed = client.get("/api/v1/jobs")
                listed.raise_for_status()
                ids = [job["id"] for job in listed.json()["jobs"]]
                rows = []
                for action, selection in ACTIONS:
                    body: dict[str, object] = {"action": action, "limit": jobs}
                    if selection is None:
                        body["ids"] = ids
                    else:
                        body["filter"] = selection
                    started = time.perf_counter()
                    response = client.post("/api/v1/jobs/bulk", json=body)
                    elapsed = time.perf_counter() - started
                    response.raise_for_status()
                    outcome = response.json()
                    if outcome != {"matched": jobs, "changed": jobs}:
                        raise RuntimeError(f"{action}: {outcome}")
                    by = "ids" if selection is None else "filter"
                    rows.append((f"{action} by {by}", outcome["changed"], elapsed))
                return rows
        finally:
            server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument(
        "--postgres",
        default="postgresql://postgres@127.0.0.1:5432/postgres",
        help="admin DSN of the PostgreSQL server ('' to skip PostgreSQL)",
    )
    args = parser.parse_args()
    kinds = ["sqlite", "postgres"] if args.postgres else ["sqlite"]
    print(f"{'backend':<10} {'action':<16} {'jobs changed':>12} {'seconds':>8}")
    with tempfile.TemporaryDirectory(prefix="orch-bulk-") as tmp:
        for kind in kinds:
            workdir = Path(tmp) / kind
            workdir.mkdir()
            for action, changed, seconds in measure(kind, args.jobs, workdir, args.postgres):
                print(f"{kind:<10} {action:<16} {changed:>12} {seconds:>8.2f}", flush=True)


if __name__ == "__main__":
    main()
