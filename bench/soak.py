"""Soak: many WebSocket subscribers and a mix of HTTP reads and writes against a real server.

Starts `orchestrator serve` on a free loopback port (SQLite in a temp dir unless
--database-url, which must name a fresh database), opens --subscribers change-feed
subscriptions (jobs and tasks), runs writers and readers for --duration seconds, then checks
that every subscriber saw every change exactly once, in order.

    .venv/bin/python bench/soak.py [--subscribers 500] [--duration 60] [--database-url …]

What a subscriber should have seen is what the change log holds for jobs and tasks after its
`subscribed` ack: a fresh probe subscribes with `since` and reads it back before a `pong`
(the log also holds revisions of other collections, such as users, that no jobs/tasks
subscriber gets). Every wait is bounded and the whole run stays within 90 s. Prints errors
(with their reasons), missed, duplicated and out-of-order change events and the server's RSS
growth; exits 1 unless they are 0 / 0 / 0 / 0 and under 50 MB, printing the end of the server
log on failure.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import itertools
import os
import random
import shutil
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.servers import ServerProcess

ADMIN_PASSWORD = "soak-admin-password"
RSS_LIMIT_MB = 50.0
TASKS = "/api/v1/collab/tasks"
TASK_LIST = "/api/v1/collab/state/tasks"
JOBS = "/api/v1/jobs"
COLLECTIONS = ["jobs", "tasks"]

RUN_LIMIT_SECONDS = 90.0  # the whole run, server start and stop included
MAX_DURATION_SECONDS = 75.0
SERVER_START_SECONDS = 30.0
CONNECT_SECONDS = 20.0  # for every subscriber to connect and get its ack
FRAME_SECONDS = 10.0  # for any one expected frame (connection, ack, pong)
HTTP_TIMEOUT_SECONDS = 5.0
# Kept free after the writes: the last requests, the probe, the stragglers, closing, stopping.
RESERVE_SECONDS = 9.0
CLOSE_SECONDS = 3.0
STOP_SECONDS = 3.0
CONNECT_CONCURRENCY = 50
LOG_TAIL_LINES = 40


class Unexpected(Exception):
    """The server answered something the protocol does not allow here."""


@dataclass
class Subscriber:
    revisions: list[int] = field(default_factory=list)
    ack_revision: int | None = None
    error: str | None = None  # why this subscriber failed, if it did
    ws: ClientConnection | None = None
    closing: bool = False


@dataclass
class Tally:
    requests: int = 0
    errors: list[str] = field(default_factory=list)
    acknowledged_writes: int = 0


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def describe(exc: BaseException) -> str:
    if isinstance(exc, ConnectionClosed):
        rcvd = exc.rcvd
        if rcvd is None:
            return "connection lost without a close frame"
        return f"closed by the server: {rcvd.code} {rcvd.reason!r}"
    if isinstance(exc, TimeoutError):
        return "timed out"
    return f"{type(exc).__name__}: {exc}"[:200]


async def send(ws: ClientConnection, body: dict[str, Any]) -> None:
    # A text frame: the server answers a binary frame with an error and ignores it.
    await ws.send(orjson.dumps(body).decode())


async def expect(ws: ClientConnection, kind: str, within: float) -> dict[str, Any]:
    """The next frame, which must be of type `kind`, within `within` seconds."""
    try:
        raw = await asyncio.wait_for(ws.recv(), within)
    except TimeoutError:
        raise Unexpected(f"no {kind!r} frame within {within:.0f} s") from None
    message: dict[str, Any] = orjson.loads(raw)
    if message.get("type") != kind:
        raise Unexpected(f"expected {kind!r}, got {raw[:200]!r}")
    return message


async def open_socket(url: str, token: str, within: float) -> ClientConnection:
    ws = await connect(
        f"{url}/ws?token={token}",
        open_timeout=within,
        close_timeout=CLOSE_SECONDS,
        ping_interval=None,
        max_queue=None,
        compression=None,
    )
    try:
        await expect(ws, "connection", within)
    except BaseException:
        await ws.close()
        raise
    return ws


async def subscribe(*, url: str, token: str, sub: Subscriber, gate: asyncio.Semaphore) -> None:
    """Connect and subscribe (within CONNECT_SECONDS), then record every change frame."""
    try:
        try:
            async with asyncio.timeout(CONNECT_SECONDS), gate:
                sub.ws = await open_socket(url, token, FRAME_SECONDS)
                await send(sub.ws, {"type": "subscribe", "collections": COLLECTIONS})
                ack = await expect(sub.ws, "subscribed", FRAME_SECONDS)
                sub.ack_revision = int(ack["revision"])
        except TimeoutError:
            sub.error = f"no ack within {CONNECT_SECONDS:.0f} s"
            return
        except (Unexpected, ConnectionClosed, OSError) as exc:
            sub.error = f"subscribing: {describe(exc)}"
            return
        ws = sub.ws
        while True:
            raw = await ws.recv()
            message = orjson.loads(raw)
            if message.get("type") != "change":
                raise Unexpected(f"unexpected frame {raw[:200]!r}")
            sub.revisions.append(int(message["revision"]))
    except ConnectionClosed as exc:
        if not sub.closing:
            sub.error = describe(exc)
    except Exception as exc:
        sub.error = describe(exc)
    finally:
        if sub.ws is not None:
            await sub.ws.close()


async def log_after(url: str, token: str, since: int, within: float) -> tuple[list[int], int]:
    """The jobs/tasks revisions after `since` in the log, and the revision they run up to.

    A fresh subscription with `since` replays them from the log; the `pong` that follows
    comes after every change up to its revision.
    """
    async with asyncio.timeout(within):
        ws = await open_socket(url, token, within)
        try:
            await send(ws, {"type": "subscribe", "collections": COLLECTIONS, "since": since})
            await expect(ws, "subscribed", within)
            await send(ws, {"type": "ping"})
            revisions: list[int] = []
            while True:
                raw = await ws.recv()
                message = orjson.loads(raw)
                if message.get("type") == "pong":
                    return revisions, int(message["revision"])
                if message.get("type") != "change":
                    raise Unexpected(f"probe: unexpected frame {raw[:200]!r}")
                revisions.append(int(message["revision"]))
        finally:
            await ws.close()


async def writer(client: httpx.AsyncClient, tally: Tally, deadline: float, seed: int) -> None:
    rng = random.Random(seed)
    mine: list[tuple[str, str]] = []  # (task id, etag)
    while time.monotonic() < deadline:
        roll = rng.random()
        try:
            if roll < 0.4 or not mine:
                response = await client.post(TASKS, json={"title": f"soak {rng.random()}"})
                if response.status_code == 201:
                    mine.append((response.json()["id"], response.headers["etag"]))
            elif roll < 0.6:
                response = await client.post(JOBS, json={"title": f"soak job {seed}"})
            elif roll < 0.85:
                task_id, etag = mine.pop(rng.randrange(len(mine)))
                response = await client.patch(
                    f"{TASKS}/{task_id}", json={"title": "edited"}, headers={"If-Match": etag}
                )
                if response.status_code == 200:
                    mine.append((task_id, response.headers["etag"]))
            else:
                task_id, etag = mine.pop(rng.randrange(len(mine)))
                response = await client.delete(f"{TASKS}/{task_id}", headers={"If-Match": etag})
        except httpx.HTTPError as exc:
            tally.errors.append(f"write: {type(exc).__name__}")
            continue
        tally.requests += 1
        if response.status_code >= 400:
            tally.errors.append(f"write {response.request.method}: {response.status_code}")
        else:
            tally.acknowledged_writes += 1


async def reader(client: httpx.AsyncClient, tally: Tally, deadline: float) -> None:
    etag = ""
    while time.monotonic() < deadline:
        try:
            headers = {"If-None-Match": etag} if etag else {}
            response = await client.get(TASK_LIST, headers=headers)
            tally.requests += 1
            if response.status_code == 200:
                etag = response.headers.get("etag", "")
            elif response.status_code != 304:
                tally.errors.append(f"read: {response.status_code}")
            response = await client.get(f"{JOBS}?limit=20")
            tally.requests += 1
            if response.status_code != 200:
                tally.errors.append(f"read jobs: {response.status_code}")
        except httpx.HTTPError as exc:
            tally.errors.append(f"read: {type(exc).__name__}")


def check(subs: list[Subscriber], log: list[int], last: int) -> dict[str, int]:
    """Compare what each subscriber received with what the log says it should have."""
    missed = duplicated = out_of_order = unexpected = 0
    ordered = sorted(set(log))
    for sub in subs:
        if sub.ack_revision is None:
            continue  # never subscribed: counted as an error
        seen = set(sub.revisions)
        duplicated += len(sub.revisions) - len(seen)
        out_of_order += sum(b <= a for a, b in itertools.pairwise(sub.revisions))
        lo = bisect.bisect_right(ordered, sub.ack_revision)
        hi = bisect.bisect_right(ordered, last)
        expected = set(ordered[lo:hi])
        missed += len(expected - seen)
        # Not jobs/tasks, at or before the ack, or past the end: never a change for us.
        unexpected += len(seen - expected)
    return {
        "missed": missed,
        "duplicated": duplicated,
        "out_of_order": out_of_order,
        "unexpected": unexpected,
    }


async def soak(
    url: str, pid: int, *, subscribers: int, duration: float, run_deadline: float
) -> tuple[dict[str, float], list[str]]:
    """Figures, and the reasons for every error (repeated ones once, with a count)."""
    other: list[str] = []  # errors that are neither an HTTP request's nor a subscriber's
    async with httpx.AsyncClient(base_url=url, timeout=HTTP_TIMEOUT_SECONDS) as anon:
        login = await anon.post(
            "/auth/login", json={"username": "admin", "password": ADMIN_PASSWORD}
        )
        if login.status_code != 200:
            raise RuntimeError(f"login: {login.status_code} {login.text[:200]} (a fresh database?)")
        token = login.json()["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    ws_url = url.replace("http://", "ws://")
    rss_idle = rss_mb(pid)

    subs = [Subscriber() for _ in range(subscribers)]
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)
    connect_started = time.monotonic()
    listeners = [
        asyncio.create_task(subscribe(url=ws_url, token=token, sub=sub, gate=gate)) for sub in subs
    ]
    # Each subscriber gives up on its own after CONNECT_SECONDS; this only adds a margin.
    connect_deadline = connect_started + CONNECT_SECONDS + 2
    while any(s.ack_revision is None and s.error is None for s in subs):
        if time.monotonic() > connect_deadline:
            break
        await asyncio.sleep(0.05)
    connect_seconds = time.monotonic() - connect_started
    acked = [s for s in subs if s.ack_revision is not None]

    rss_before = rss_mb(pid)
    tally = Tally()
    started = time.monotonic()
    deadline = min(started + duration, run_deadline - RESERVE_SECONDS)
    limits = httpx.Limits(max_connections=20)
    last = 0
    log: list[int] = []
    async with httpx.AsyncClient(
        base_url=url, headers=headers, timeout=HTTP_TIMEOUT_SECONDS, limits=limits
    ) as client:
        await asyncio.gather(
            *(writer(client, tally, deadline, seed) for seed in range(8)),
            *(reader(client, tally, deadline) for _ in range(4)),
        )
        write_seconds = time.monotonic() - started
        final = (await client.get(TASK_LIST)).status_code
        if final != 200:
            tally.errors.append(f"final read: {final}")

    # What everyone should have got: the jobs/tasks part of the log after the earliest ack.
    since = min((s.ack_revision for s in acked if s.ack_revision is not None), default=0)
    settle_deadline = run_deadline - CLOSE_SECONDS - STOP_SECONDS
    try:
        within = max(FRAME_SECONDS, settle_deadline - time.monotonic())
        log, last = await log_after(ws_url, token, since, within)
    except (TimeoutError, Unexpected, ConnectionClosed, OSError) as exc:
        other.append(f"probe: {describe(exc)}")
    if any(b <= a for a, b in itertools.pairwise(log)):
        other.append("probe: the log replay is not in strictly increasing order")

    # Wait for the stragglers (up to the newest change), as long as the budget allows.
    newest = log[-1] if log else 0
    while time.monotonic() < settle_deadline and any(  # noqa: ASYNC110
        s.error is None
        and s.ack_revision is not None
        and s.ack_revision < newest
        and (not s.revisions or s.revisions[-1] < newest)
        for s in subs
    ):
        await asyncio.sleep(0.1)
    elapsed = time.monotonic() - started
    rss_after = rss_mb(pid)

    for sub in subs:
        sub.closing = True
    closes = [asyncio.create_task(s.ws.close()) for s in subs if s.ws is not None]
    if closes:
        await asyncio.wait(closes, timeout=CLOSE_SECONDS)
    _, pending = await asyncio.wait(listeners, timeout=1)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    failed = Counter(s.error for s in subs if s.error is not None)

    results = check(subs, log, last)
    if not tally.errors and len(log) != tally.acknowledged_writes:
        other.append(
            f"the log holds {len(log)} job/task changes, but {tally.acknowledged_writes} "
            "writes were acknowledged"
        )
    figures = {
        "subscribers": float(len(acked)),
        "subscriber_errors": float(sum(failed.values())),
        "http_requests": float(tally.requests),
        "http_errors": float(len(tally.errors)),
        "other_errors": float(len(other)),
        "writes_acknowledged": float(tally.acknowledged_writes),
        "log_changes": float(len(log)),
        "final_revision": float(last),
        "change_frames": float(sum(len(s.revisions) for s in subs)),
        **{name: float(value) for name, value in results.items()},
        "rss_idle_mb": rss_idle,
        "rss_before_mb": rss_before,
        "rss_after_mb": rss_after,
        "rss_growth_mb": rss_after - rss_before,
        "connect_seconds": connect_seconds,
        "write_seconds": write_seconds,
        "seconds": elapsed,
        "requests_per_second": tally.requests / write_seconds if write_seconds else 0.0,
    }
    reasons = [
        *(f"http ({n}x): {reason}" for reason, n in Counter(tally.errors).most_common()),
        *(f"subscriber ({n}x): {reason}" for reason, n in failed.most_common()),
        *other,
    ]
    return figures, reasons


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"(no server log: {exc})"
    return "\n".join(text.splitlines()[-lines:]) or "(the server log is empty)"


def main(argv: list[str] | None = None) -> int:
    run_started = time.monotonic()
    run_deadline = run_started + RUN_LIMIT_SECONDS
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=500)
    parser.add_argument(
        "--duration",
        type=float,
        default=60.0,
        help=f"seconds of writes (at most {MAX_DURATION_SECONDS:.0f}; shortened if the run "
        f"would exceed {RUN_LIMIT_SECONDS:.0f} s)",
    )
    parser.add_argument("--database-url", default=None, help="a fresh database (default SQLite)")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (server log)")
    args = parser.parse_args(argv)
    duration = min(args.duration, MAX_DURATION_SECONDS)
    tmp = Path(tempfile.mkdtemp(prefix="orch-soak-"))
    log_path = tmp / "server.log"
    env = {
        "ORCH_ENVIRONMENT": "test",
        "ORCH_DATA_DIR": str(tmp / "data"),
        "ORCH_ADMIN_PASSWORD": ADMIN_PASSWORD,
        "ORCH_SECRET_KEY": "soak-secret-key-" + "x" * 32,
        "ORCH_LOG_LEVEL": "WARNING",
        "ORCH_CHANGE_POLL_SECONDS": "0.2",
        "ORCH_WS_MAX_CONNECTIONS_PER_USER": str(args.subscribers + 10),
        "ORCH_WS_MAX_MESSAGES_PER_SECOND": "1000",
        "ORCH_RATE_LIMIT_ENABLED": "false",
    }
    if args.database_url:
        env["ORCH_DATABASE_URL"] = args.database_url
    figures: dict[str, float] = {}
    reasons: list[str] = []  # from soak(), counted in its figures
    problems: list[str] = []  # found here
    server = ServerProcess(env=env, log_path=log_path)
    try:
        server.start(timeout=SERVER_START_SECONDS)
        assert server.process is not None
        figures, reasons = asyncio.run(
            asyncio.wait_for(
                soak(
                    server.url,
                    server.process.pid,
                    subscribers=args.subscribers,
                    duration=duration,
                    run_deadline=run_deadline,
                ),
                max(1.0, run_deadline - STOP_SECONDS - time.monotonic()),
            )
        )
    except Exception as exc:
        problems.append(f"the run failed: {describe(exc)}")
    finally:
        server.stop(timeout=STOP_SECONDS)
    total = time.monotonic() - run_started

    for name, value in figures.items():
        print(f"{name:>22}: {value:,.1f}")
    print(f"{'total_seconds':>22}: {total:,.1f}")
    if figures and figures["write_seconds"] < duration - 1:
        print(f"writes shortened to {figures['write_seconds']:.1f} s to stay within the limit")
    if figures and figures["subscribers"] + figures["subscriber_errors"] != args.subscribers:
        problems.append(f"{figures['subscribers']:.0f} of {args.subscribers} subscribed")
    if total > RUN_LIMIT_SECONDS:
        problems.append(f"the run took {total:.1f} s, over {RUN_LIMIT_SECONDS:.0f} s")
    counted = ("http_errors", "subscriber_errors", "other_errors")
    errors = sum(int(figures.get(name, 0)) for name in counted) + len(problems)
    reasons += problems
    missed = figures.get("missed", 0)
    duplicated = figures.get("duplicated", 0)
    out_of_order = figures.get("out_of_order", 0)
    unexpected = figures.get("unexpected", 0)
    growth = figures.get("rss_growth_mb", float("nan"))
    ok = (
        bool(figures)
        and errors == 0
        and missed == duplicated == out_of_order == unexpected == 0
        and growth < RSS_LIMIT_MB
    )
    for reason in reasons[:30]:
        print(f"error: {reason}")
    if len(reasons) > 30:
        print(f"… and {len(reasons) - 30} more errors")
    print(
        f"errors {errors}, missed {missed:.0f}, duplicated {duplicated:.0f}, "
        f"out-of-order {out_of_order:.0f}, unexpected {unexpected:.0f}, "
        f"RSS growth {growth:.1f} MB: " + ("OK" if ok else "FAILED")
    )
    if not ok:
        print(f"--- last {LOG_TAIL_LINES} lines of the server log ({log_path}) ---")
        print(log_tail(log_path))
    if args.keep or not ok:
        print(f"kept {tmp}")
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
