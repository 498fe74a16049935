"""This service's job queue next to Celery (Redis broker) and procrastinate (PostgreSQL), one run.

Each system drains the same no-op jobs with one worker process running 8 at a time:

- **drain**: `--jobs` (2,000) enqueued, then a worker started; jobs/s from the first job run to
  the last (the worker's start-up is not counted);
- **steady**: a worker running, jobs enqueued at `--rate` (10) per second for `--steady-seconds`;
  the p50 and p99 of enqueue-to-run (a job has "run" when its handler has; the report or ack
  that follows is not in the figure, for any system);
- **CPU** of the server and of its database or broker per 1,000 drained jobs, read from /proc:
  the `orchestrator serve` process, the PostgreSQL backends serving the benchmark's database
  (never PostgreSQL's shared background processes), the Redis server the benchmark starts;
  and the worker's own CPU (its process and children).

Rounds are interleaved (every system once per round, in turn) and each figure is the median
over rounds. Celery and procrastinate are installed by the benchmark into a virtual environment
of their own under the cache directory (pinned below). PostgreSQL databases it creates are
dropped after the run; Redis is a `redis-server` of its own on a free loopback port, its keys
under their own prefix, gone with it.

    .venv/bin/python bench/queues.py                   # all four systems, 3 rounds
    .venv/bin/python bench/queues.py --systems sqlite,celery   # a subset of the four
    .venv/bin/python bench/queues.py --smoke           # seconds: 40 jobs, 2 s steady, one round
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `python bench/queues.py`

import argparse
import asyncio
import hashlib
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg

from bench import servers
from bench.servers import Child, descendants

REPO = servers.REPO
SYSTEMS = ("sqlite", "postgres", "celery", "procrastinate")
LABELS = {
    "sqlite": "this service, SQLite",
    "postgres": "this service, PostgreSQL",
    "celery": "Celery 5.7 (Redis broker)",
    "procrastinate": "procrastinate 3.10 (PostgreSQL)",
}
RIVAL_PINS = ("celery[redis]==5.7.0", "procrastinate==3.10.0", "psycopg[binary]==3.3.9")
CONCURRENCY = 8
DEADLINE = 600.0  # seconds a phase may take before the run is declared failed
CLK_TCK = os.sysconf("SC_CLK_TCK")


# --------------------------------------------------------------------------- CPU from /proc


def process_cpu(pid: int) -> float | None:
    """CPU seconds (user + system, all threads) of a live process, or None once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


PidSource = Callable[[], list[int]]


class CpuMeter:
    """CPU used by a changing set of processes between `start()` and `stop()`.

    Sampled every 0.2 s, so that processes that come and go (PostgreSQL backends) count too;
    a process seen only after the start counts from zero (it began inside the window).
    """

    def __init__(self, sources: list[PidSource]) -> None:
        self.sources = sources
        self._first: dict[int, float] = {}
        self._last: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _sample(self, *, baseline: bool) -> None:
        for source in self.sources:
            for pid in source():
                cpu = process_cpu(pid)
                if cpu is None:
                    continue
                if pid not in self._first:
                    self._first[pid] = cpu if baseline else 0.0
                self._last[pid] = cpu

    def start(self) -> None:
        self._sample(baseline=True)
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            self._sample(baseline=False)

    def stop(self) -> float:
        if self._thread is None:
            return 0.0
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._sample(baseline=False)
        return sum(self._last[pid] - self._first[pid] for pid in self._last)


class PostgresBackends:
    """The pids of the PostgreSQL backends connected to one database (the server is local)."""

    def __init__(self, admin_dsn: str, database: str) -> None:
        self.admin_dsn, self.database = admin_dsn, database
        self._loop = asyncio.new_event_loop()
        self._conn = self._loop.run_until_complete(asyncpg.connect(admin_dsn))
        self._lock = threading.Lock()

    def __call__(self) -> list[int]:
        with self._lock:
            rows = self._loop.run_until_complete(
                self._conn.fetch(
                    "SELECT pid FROM pg_stat_activity WHERE datname = $1", self.database
                )
            )
        return [int(row["pid"]) for row in rows]

    def close(self) -> None:
        self._loop.run_until_complete(self._conn.close())
        self._loop.close()


# ------------------------------------------------------------------------------ processes


def run_to_end(command: list[str], env: dict[str, str], what: str) -> None:
    done = subprocess.run(
        command,
        env={**os.environ, **env},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=DEADLINE,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"{what} failed ({done.returncode}):\n{done.stdout[-2000:]}{done.stderr[-3000:]}"
        )


def rivals_python(cache: Path) -> Path:
    """The interpreter of the rivals' environment, created and installed on first use."""
    key = hashlib.sha256(" ".join((sys.version, *RIVAL_PINS)).encode()).hexdigest()[:12]
    venv = cache / f"rivals-{key}"
    python = venv / "bin" / "python"
    marker = venv / ".installed"
    if not marker.exists():
        print(f"installing {', '.join(RIVAL_PINS)} into {venv}", flush=True)
        shutil.rmtree(venv, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
             *RIVAL_PINS],
            check=True,
        )  # fmt: skip
        marker.touch()
    return python


@contextmanager
def redis_server(workdir: Path) -> Iterator[tuple[str, Child]]:
    """A `redis-server` of the benchmark's own on a free loopback port, nothing persisted."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit(
            "bench/queues.py: Celery's broker needs redis-server (apt-get install redis-server)"
        )
    port = servers.free_port()
    redis = Child(
        "redis",
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--protected-mode", "yes"],
        {},
        workdir / "redis.log",
    ).start()  # fmt: skip
    deadline = time.monotonic() + 30
    while True:
        redis.check_alive()
        with suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5) as sock:
            sock.sendall(b"PING\r\n")
            if sock.recv(16).startswith(b"+PONG"):
                break
        if time.monotonic() > deadline:
            raise RuntimeError("redis-server did not start")
        time.sleep(0.05)
    try:
        yield f"redis://127.0.0.1:{port}/0", redis
    finally:
        redis.stop()


async def _admin(admin_dsn: str, statement: str) -> None:
    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


@contextmanager
def postgres_database(admin_dsn: str, label: str) -> Iterator[tuple[str, str]]:
    """A fresh database (its name and URL), dropped afterwards."""
    name = f"orch_bench_q_{uuid.uuid4().hex[:10]}_{label}"
    asyncio.run(_admin(admin_dsn, f'CREATE DATABASE "{name}"'))
    try:
        yield name, f"{admin_dsn.rpartition('/')[0]}/{name}"
    finally:
        asyncio.run(_admin(admin_dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


# ------------------------------------------------------------------------- one system


def read_times(path: Path) -> dict[int, float]:
    if not path.exists():
        return {}
    times = {}
    for line in path.read_text().splitlines():
        n, _, at = line.partition(" ")
        if at:
            times[int(n)] = float(at)
    return times


def wait_done(done_file: Path, count: int, watched: list[Child]) -> None:
    """Until `count` job lines are in the done file (and no process we need has died)."""
    deadline = time.monotonic() + DEADLINE
    while True:
        if done_file.exists() and done_file.read_bytes().count(b"\n") >= count:
            return
        for child in watched:
            child.check_alive()
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"{done_file.name}: not all {count} jobs ran within {DEADLINE:.0f} s"
            )
        time.sleep(0.02)


@dataclass
class Figures:
    drain_rate: list[float] = field(default_factory=list)
    server_cpu: list[float] = field(default_factory=list)  # seconds per 1,000 jobs
    worker_cpu: list[float] = field(default_factory=list)
    p50: list[float] = field(default_factory=list)  # milliseconds
    p99: list[float] = field(default_factory=list)


@dataclass
class System:
    """How to run one queue: its producer command, its worker, the processes whose CPU counts."""

    name: str
    produce: list[str]
    env: dict[str, str]
    worker: Callable[[Path], Child]
    server_pids: list[PidSource]


def measure(system: System, args: argparse.Namespace, workdir: Path, figures: Figures) -> None:
    """One round of one system: a drain, then a steady phase."""
    env = dict(system.env)
    done_file = workdir / f"{system.name}.done"
    enqueued_file = workdir / f"{system.name}.enqueued"
    for stale in (done_file, enqueued_file):
        stale.unlink(missing_ok=True)
    env["BENCH_DONE_FILE"] = str(done_file)

    def produce(first: int, count: int, rate: float) -> None:
        run_to_end(
            [*system.produce, "--first", str(first), "--count", str(count), "--rate", str(rate),
             "--out", str(enqueued_file)],
            env,
            f"{system.name} producer",
        )  # fmt: skip

    # Drain: the backlog first, then the worker.
    produce(0, args.jobs, 0)
    worker = system.worker(done_file).start()
    try:
        server = CpuMeter(system.server_pids)
        own = CpuMeter([lambda: descendants(worker.pid)])
        try:
            # Timed from the first job run, so that start-up (imports, a login's password
            # hash, a pool of processes) is left out for every system alike.
            wait_done(done_file, 1, [worker])
            server.start()
            own.start()
            wait_done(done_file, args.jobs, [worker])
        finally:
            server_cpu = server.stop()
            worker_cpu = own.stop()
        # Steady: the worker is running and idle; jobs arrive at a fixed rate.
        steady = round(args.rate * args.steady_seconds)
        produce(args.jobs, steady, args.rate)
        wait_done(done_file, args.jobs + steady, [worker])
    finally:
        worker.stop(timeout=30)
    times = sorted(at for n, at in read_times(done_file).items() if n < args.jobs)
    figures.drain_rate.append((len(times) - 1) / (times[-1] - times[0]))
    figures.server_cpu.append(server_cpu / (args.jobs - 1) * 1000)
    figures.worker_cpu.append(worker_cpu / (args.jobs - 1) * 1000)
    ran, enqueued = read_times(done_file), read_times(enqueued_file)
    latencies = [(ran[n] - enqueued[n]) * 1000 for n in range(args.jobs, args.jobs + steady)]
    cuts = statistics.quantiles(latencies, n=100, method="inclusive")
    figures.p50.append(statistics.median(latencies))
    figures.p99.append(cuts[98])


@contextmanager
def ours(
    name: str, workdir: Path, round_: int, database_url: str | None, backends: PidSource | None
) -> Iterator[System]:
    server = servers.service(workdir, f"{name}-{round_}", database_url=database_url)
    server.launch()
    try:
        server.wait_ready()
        env = {
            "ORCH_URL": server.url,
            "ORCH_USERNAME": "admin",
            "ORCH_PASSWORD": servers.ADMIN_PASSWORD,
            "PYTHONPATH": str(REPO),
        }

        def worker(done_file: Path) -> Child:
            return Child(
                f"{name} worker",
                [sys.executable, "-m", "orchestrator", "worker", "--queue", "bench",
                 "--handler", "bench.rivals.ours:handle", "--concurrency", str(CONCURRENCY)],
                # Like the other workers here, it logs trouble only (no line per job).
                {**env, "BENCH_DONE_FILE": str(done_file), "ORCH_LOG_LEVEL": "WARNING"},
                workdir / f"{name}-{round_}-worker.log",
            )  # fmt: skip

        pids: list[PidSource] = [lambda: [server.pid]]
        if backends is not None:
            pids.append(backends)
        yield System(name, [sys.executable, "-m", "bench.rivals.ours"], env, worker, pids)
    finally:
        server.stop()


def celery(python: Path, redis_url: str, redis: Child, workdir: Path, round_: int) -> System:
    env = {
        "BENCH_REDIS_URL": redis_url,
        "BENCH_REDIS_PREFIX": "orch_bench_queues:",
        "PYTHONPATH": str(REPO),
    }

    def worker(done_file: Path) -> Child:
        return Child(
            "celery worker",
            [str(python), "-m", "celery", "-A", "bench.rivals.celery_app", "worker",
             "--concurrency", str(CONCURRENCY), "--queues", "bench", "--loglevel", "WARNING",
             "--without-gossip", "--without-mingle", "--without-heartbeat"],
            {**env, "BENCH_DONE_FILE": str(done_file)},
            workdir / f"celery-{round_}-worker.log",
        )  # fmt: skip

    return System(
        "celery", [str(python), "-m", "bench.rivals.celery_app"], env, worker, [lambda: [redis.pid]]
    )


@contextmanager
def procrastinate(python: Path, admin_dsn: str, workdir: Path, round_: int) -> Iterator[System]:
    with postgres_database(admin_dsn, f"procrastinate{round_}") as (database, url):
        env = {"BENCH_PROCRASTINATE_DSN": url, "PYTHONPATH": str(REPO)}
        app = "bench.rivals.procrastinate_app.app"
        run_to_end(
            [str(python), "-m", "procrastinate", "--app", app, "schema", "--apply"],
            env,
            "procrastinate schema",
        )
        backends = PostgresBackends(admin_dsn, database)

        def worker(done_file: Path) -> Child:
            return Child(
                "procrastinate worker",
                [str(python), "-m", "procrastinate", "--app", app, "worker",
                 "--concurrency", str(CONCURRENCY), "--queues", "bench"],
                {**env, "BENCH_DONE_FILE": str(done_file)},
                workdir / f"procrastinate-{round_}-worker.log",
            )  # fmt: skip

        try:
            yield System(
                "procrastinate",
                [str(python), "-m", "bench.rivals.procrastinate_app"],
                env,
                worker,
                [backends],
            )
        finally:
            backends.close()


# ------------------------------------------------------------------------------ the run


def machine() -> str:
    cpu = "unknown CPU"
    with suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return f"{os.cpu_count()} CPUs ({cpu}), Python {sys.version.split()[0]}"


def print_table(args: argparse.Namespace, results: dict[str, Figures]) -> None:
    med = statistics.median

    def ratio(name: str, other: str) -> str:
        if name == other or other not in results:
            return ""
        return f"{med(results[name].drain_rate) / med(results[other].drain_rate):.2f}x"

    print()
    print(
        f"{args.jobs:,} no-op jobs drained by one worker process running {CONCURRENCY} at a "
        f"time; steady {args.rate:g} jobs/s for {args.steady_seconds:g} s; median of "
        f"{args.rounds} interleaved round(s); {machine()}."
    )
    print()
    print(
        "| system | drain, jobs/s | vs Celery | vs procrastinate "
        "| server + database/broker CPU per 1,000 jobs | worker CPU per 1,000 jobs "
        "| steady p50 / p99, ms |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name in SYSTEMS:
        if name not in results:
            continue
        f = results[name]
        print(
            f"| {LABELS[name]} | {med(f.drain_rate):,.0f} | {ratio(name, 'celery')} "
            f"| {ratio(name, 'procrastinate')} | {med(f.server_cpu):.2f} s "
            f"| {med(f.worker_cpu):.2f} s | {med(f.p50):.0f} / {med(f.p99):.0f} |"
        )
    print()
    goals = []
    if "sqlite" in results and "celery" in results:
        goals.append(f"SQLite drain / Celery drain: {ratio('sqlite', 'celery')} (goal >= 1x)")
    if "postgres" in results and "procrastinate" in results:
        goals.append(
            f"PostgreSQL drain / procrastinate drain: {ratio('postgres', 'procrastinate')} "
            "(goal >= 2x)"
        )
    if "sqlite" in results:
        cpu = med(results["sqlite"].server_cpu)
        goals.append(f"SQLite server CPU per job: {cpu:.2f} ms (goal < 0.7 ms)")
    for goal in goals:
        print(f"- {goal}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--systems", default=",".join(SYSTEMS), help="comma-separated subset")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (median)")
    parser.add_argument("--jobs", type=int, default=2000, help="jobs per drain")
    parser.add_argument("--rate", type=float, default=10.0, help="steady jobs per second")
    parser.add_argument("--steady-seconds", type=float, default=20.0, help="steady duration")
    parser.add_argument(
        "--postgres",
        default="postgresql://postgres@127.0.0.1:5432/postgres",
        metavar="ADMIN_DSN",
        help="PostgreSQL server for the service and procrastinate (own databases, dropped)",
    )
    parser.add_argument(
        "--cache",
        type=Path,
        default=Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
        / "orchestrator-bench",
        help="where the rivals' virtual environment is kept",
    )
    parser.add_argument("--smoke", action="store_true", help="40 jobs, 2 s steady, one round")
    parser.add_argument("--keep", action="store_true", help="keep the work directory and logs")
    args = parser.parse_args(argv)
    if args.smoke:
        args.rounds, args.jobs, args.steady_seconds = 1, 40, 2.0
    chosen = [s.strip() for s in args.systems.split(",") if s.strip()]
    if not chosen or not set(chosen) <= set(SYSTEMS):
        parser.error(f"--systems: choose from {', '.join(SYSTEMS)}")
    if args.jobs < 2 or args.rate * args.steady_seconds < 2:
        parser.error("need at least 2 jobs in each phase")

    # Stopped by a signal, still drop the databases and stop the processes it started.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    signal.signal(signal.SIGINT, signal.default_int_handler)
    python = rivals_python(args.cache) if {"celery", "procrastinate"} & set(chosen) else None
    workdir = Path(tempfile.mkdtemp(prefix="orch-bench-queues-"))
    results = {name: Figures() for name in chosen}
    try:
        with ExitStack() as stack:
            redis = stack.enter_context(redis_server(workdir)) if "celery" in chosen else None
            for round_ in range(1, args.rounds + 1):
                for name in chosen:
                    print(f"round {round_}: {LABELS[name]}", flush=True)
                    run_one(
                        name,
                        args,
                        workdir=workdir,
                        round_=round_,
                        python=python,
                        redis=redis,
                        figures=results[name],
                    )
        if args.keep:
            print(f"work directory and logs: {workdir}", flush=True)
        print_table(args, results)
        return 0
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)


def run_one(
    name: str,
    args: argparse.Namespace,
    *,
    workdir: Path,
    round_: int,
    python: Path | None,
    redis: tuple[str, Child] | None,
    figures: Figures,
) -> None:
    if name == "sqlite":
        with ours(name, workdir, round_, None, None) as system:
            measure(system, args, workdir, figures)
    elif name == "postgres":
        with postgres_database(args.postgres, f"ours{round_}") as (database, url):
            backends = PostgresBackends(args.postgres, database)
            try:
                with ours(name, workdir, round_, url, backends) as system:
                    measure(system, args, workdir, figures)
            finally:
                backends.close()
    elif name == "celery":
        assert python is not None
        assert redis is not None
        measure(celery(python, redis[0], redis[1], workdir, round_), args, workdir, figures)
    else:
        assert python is not None
        with procrastinate(python, args.postgres, workdir, round_) as system:
            measure(system, args, workdir, figures)


if __name__ == "__main__":
    sys.exit(main())
