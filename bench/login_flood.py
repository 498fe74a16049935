"""A login flood from many addresses, each inside its own limits, against a real server: how
long a legitimate login and an authenticated read take, unflooded and flooded.

The server runs as deployed (production mode, rate limits on at their defaults, SQLite) behind
a trusted proxy on loopback, so that `X-Forwarded-For` names each client. Reads are sped up
only by raising the reads quota, which is not what is measured. Each phase lasts `--seconds`:

- **unflooded**: `GET /api/v1/jobs/{id}` with a JWT every 10 ms, and a login of a real user
  every 0.5 s (each from an address of its own, so no per-address limit is reached);
- **flood, spread**: the same while `--addresses` (16) addresses each send wrong logins for
  names of no account at the highest rate their limit allows over the phase (20 a minute:
  20 per phase, evenly spaced), far more than argon2 can hash;
- **flood, burst**: the same, but each address sends its 20 at once at the start.

The flood runs in a process of its own, so that its client work does not delay the
measuring client. A legitimate login that gets 503 (hashing pool full) is retried after its
`Retry-After`, as the SDK does; its figure is the time until it succeeded.

    .venv/bin/python bench/login_flood.py [--seconds 15] [--addresses 16]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `python bench/login_flood.py`

import argparse
import asyncio
import itertools
import multiprocessing
import statistics
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Event

import httpx

from bench.servers import ADMIN_PASSWORD, service

USER = "alice"
USER_PASSWORD = "alice-legitimate-password"
READ_INTERVAL = 0.01
LOGIN_INTERVAL = 0.5
PER_ADDRESS = 20  # ORCH_RATE_LIMIT_LOGIN_IP's default, 20/minute: one phase is under a minute


@dataclass
class Phase:
    name: str
    reads: list[float] = field(default_factory=list)
    logins: list[float] = field(default_factory=list)
    login_retries: int = 0
    flood: Counter[int] = field(default_factory=Counter)


_addresses = itertools.count(1)


def fresh_address() -> dict[str, str]:
    """An X-Forwarded-For naming a client address no request has used yet."""
    n = next(_addresses)
    return {"X-Forwarded-For": f"10.{n // 65536 % 256}.{n // 256 % 256}.{n % 256}"}


async def read_loop(
    client: httpx.AsyncClient, path: str, token: str, phase: Phase, stop: asyncio.Event
) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    while not stop.is_set():
        started = time.perf_counter()
        response = await client.get(path, headers=headers)
        phase.reads.append(time.perf_counter() - started)
        assert response.status_code == 200, response.text
        await asyncio.sleep(READ_INTERVAL)


async def login_loop(client: httpx.AsyncClient, phase: Phase, stop: asyncio.Event) -> None:
    body = {"username": USER, "password": USER_PASSWORD}
    while not stop.is_set():
        started = time.perf_counter()
        while True:
            response = await client.post("/auth/login", json=body, headers=fresh_address())
            if response.status_code != 503:
                break
            phase.login_retries += 1
            await asyncio.sleep(float(response.headers.get("retry-after", "1")))
        assert response.status_code == 200, response.text
        phase.logins.append(time.perf_counter() - started)
        await asyncio.sleep(LOGIN_INTERVAL)


async def flooder(
    client: httpx.AsyncClient, address: str, *, seconds: float, burst: bool, answers: Counter[int]
) -> None:
    headers = {"X-Forwarded-For": address}

    async def guess(n: int) -> None:
        body = {"username": f"nobody-{address}-{n}", "password": "a-wrong-password"}
        try:
            response = await client.post("/auth/login", json=body, headers=headers)
            answers[response.status_code] += 1
        except httpx.HTTPError:
            answers[0] += 1

    if burst:
        await asyncio.gather(*(guess(n) for n in range(PER_ADDRESS)))
        return
    interval = seconds / PER_ADDRESS
    tasks = []
    for n in range(PER_ADDRESS):
        tasks.append(asyncio.create_task(guess(n)))
        await asyncio.sleep(interval)
    await asyncio.gather(*tasks)


async def flood(
    base_url: str, *, seconds: float, addresses: list[str], burst: bool
) -> Counter[int]:
    answers: Counter[int] = Counter()
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
    async with httpx.AsyncClient(base_url=base_url, timeout=60, limits=limits) as client:
        floods = []
        for address in addresses:
            floods.append(
                asyncio.create_task(
                    flooder(client, address, seconds=seconds, burst=burst, answers=answers)
                )
            )
            if not burst:
                await asyncio.sleep(seconds / PER_ADDRESS / len(addresses))  # staggered
        await asyncio.gather(*floods)
    return answers


def flood_process(
    *,
    base_url: str,
    seconds: float,
    addresses: list[str],
    burst: bool,
    started: Event,
    results: Queue[dict[int, int]],
) -> None:
    """The flood, in a process of its own: its work does not slow the measuring client."""
    started.set()
    results.put(
        dict(asyncio.run(flood(base_url, seconds=seconds, addresses=addresses, burst=burst)))
    )


async def run_phase(
    name: str,
    base_url: str,
    path: str,
    token: str,
    *,
    seconds: float,
    addresses: int,
    pattern: str | None,
) -> Phase:
    phase = Phase(name)
    stop = asyncio.Event()
    context = multiprocessing.get_context("spawn")
    started, results = context.Event(), context.Queue()
    flooding = None
    if pattern is not None:
        flooders = [f"203.0.{next(_addresses) % 256}.{n + 1}" for n in range(addresses)]
        flooding = context.Process(
            target=flood_process,
            kwargs={
                "base_url": base_url,
                "seconds": seconds,
                "addresses": flooders,
                "burst": pattern == "burst",
                "started": started,
                "results": results,
            },
        )
        flooding.start()
        await asyncio.to_thread(started.wait, 60)
    async with (
        httpx.AsyncClient(base_url=base_url, timeout=60) as reader,
        httpx.AsyncClient(base_url=base_url, timeout=60) as signer,
    ):
        loops = [
            asyncio.create_task(read_loop(reader, path, token, phase, stop)),
            asyncio.create_task(login_loop(signer, phase, stop)),
        ]
        await asyncio.sleep(seconds)
        stop.set()
        await asyncio.gather(*loops)
    if flooding is not None:
        phase.flood.update(await asyncio.to_thread(results.get, True, 120))
        await asyncio.to_thread(flooding.join, 30)
    return phase


async def prepare(base_url: str) -> tuple[str, str]:
    """A job to read, a token to read it with, and the legitimate user."""
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
        body = {"username": "admin", "password": ADMIN_PASSWORD}
        response = await client.post("/auth/login", json=body, headers=fresh_address())
        response.raise_for_status()
        admin = {"Authorization": f"Bearer {response.json()['access_token']}"}
        user = {"username": USER, "password": USER_PASSWORD, "role": "member"}
        (await client.post("/api/v1/users", json=user, headers=admin)).raise_for_status()
        job = await client.post("/api/v1/jobs", json={"title": "read me"}, headers=admin)
        job.raise_for_status()
        return f"/api/v1/jobs/{job.json()['id']}", response.json()["access_token"]


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def report(phases: list[Phase]) -> None:
    base = phases[0]
    base_read = statistics.median(base.reads)
    base_read_p95 = quantile(base.reads, 0.95)
    base_login = statistics.median(base.logins)
    header = (
        f"{'phase':<16} {'read p50':>9} {'p95':>8} {'p99':>8} {'x p50':>6} {'x p95':>6}  "
        f"{'login p50':>9} {'max':>7} {'x p50':>6} {'retries':>7}  flood answers"
    )
    print(header)
    for phase in phases:
        read_p50 = statistics.median(phase.reads)
        read_p95 = quantile(phase.reads, 0.95)
        login_p50 = statistics.median(phase.logins)
        flood = " ".join(f"{status}:{count}" for status, count in sorted(phase.flood.items()))
        print(
            f"{phase.name:<16} {read_p50 * 1e3:7.2f}ms {read_p95 * 1e3:6.2f}ms "
            f"{quantile(phase.reads, 0.99) * 1e3:6.2f}ms {read_p50 / base_read:6.2f} "
            f"{read_p95 / base_read_p95:6.2f}  {login_p50 * 1e3:7.0f}ms "
            f"{max(phase.logins) * 1e3:5.0f}ms {login_p50 / base_login:6.2f} "
            f"{phase.login_retries:7d}  {flood or '-'}"
        )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--addresses", type=int, default=16)
    parser.add_argument("--hash-queue", type=int, help="ORCH_PASSWORD_HASH_QUEUE (default: its)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        server = service(
            Path(tmp),
            "login-flood",
            database_url=None,
            extra_env={
                "ORCH_RATE_LIMIT_ENABLED": "true",
                "ORCH_RATE_LIMIT_READS": "1000000/minute",
                "ORCH_TRUSTED_PROXIES": "127.0.0.1",
                "ORCH_LOG_LEVEL": "WARNING",
                **(
                    {"ORCH_PASSWORD_HASH_QUEUE": str(args.hash_queue)}
                    if args.hash_queue is not None
                    else {}
                ),
            },
        )
        await asyncio.to_thread(server.start, 120)
        try:
            path, token = await prepare(server.url)
            phases = []
            for name, flood in (
                ("unflooded", None),
                ("flood, spread", "spread"),
                ("flood, burst", "burst"),
            ):
                phases.append(
                    await run_phase(
                        name,
                        server.url,
                        path,
                        token,
                        seconds=args.seconds,
                        addresses=args.addresses,
                        pattern=flood,
                    )
                )
        finally:
            await asyncio.to_thread(server.stop)
    print(
        f"{args.addresses} flooding addresses, {PER_ADDRESS} wrong logins each per phase of "
        f"{args.seconds:.0f} s; reads every {READ_INTERVAL * 1e3:.0f} ms, a legitimate login "
        f"every {LOGIN_INTERVAL} s"
    )
    report(phases)


if __name__ == "__main__":
    asyncio.run(main())
