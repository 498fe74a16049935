"""Login cannot be used to guess or to starve: failed logins slow an account down whatever
addresses they come from, and password hashing has a bounded pool that refuses at once."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Literal

import httpx
import pytest
from argon2 import PasswordHasher
from fastapi import FastAPI

from orchestrator.auth.passwords import HashingBusy, Passwords
from orchestrator.auth.throttle import AccountPolicy
from orchestrator.config import Settings
from orchestrator.services import Services
from tests.support.apps import client_for
from tests.support.databases import migrated_postgres_database
from tests.support.servers import ServerProcess
from tests.support.settings import make_settings
from tests.support.users import ADMIN_PASSWORD, PASSWORD, make_user

WRONG = "not-the-password"
# Long enough that no attempt of a test outlives it by accident; time passes by `elapse`.
DELAY = 60


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return make_settings(
        database_url,
        tmp_path / "data",
        rate_limit_enabled=True,
        rate_limit_account_delay_seconds=DELAY,
        rate_limit_account_max_delay_seconds=4 * DELAY,
    )


@pytest.fixture
async def clients(app: FastAPI) -> AsyncIterator[list[httpx.AsyncClient]]:
    """Clients at twelve addresses of their own."""
    made = [client_for(app, (f"198.51.100.{n}", 40000 + n)) for n in range(1, 13)]
    try:
        yield made
    finally:
        for client in made:
            await client.aclose()


async def attempt(client: httpx.AsyncClient, username: str, password: str = WRONG) -> int:
    response = await client.post("/auth/login", json={"username": username, "password": password})
    if response.status_code == 429:
        assert_throttled(response)
    return response.status_code


def assert_throttled(response: httpx.Response, *, at_most: int = 4 * DELAY) -> int:
    assert response.status_code == 429, response.text
    error = response.json()["error"]
    assert error["code"] == 429
    assert error["request_id"] == response.headers["x-request-id"]
    retry_after = int(response.headers["retry-after"])
    assert 1 <= retry_after <= at_most
    assert str(retry_after) in error["message"]
    assert response.headers["ratelimit"] == f'"login_account";r=0;t={retry_after}'
    return retry_after


async def elapse(services: Services, seconds: float) -> None:
    """Time passes for the stored failures: every delay and failure is `seconds` older."""
    async with services.db.transaction() as tx:
        await tx.execute(
            "UPDATE login_failures SET blocked_until = blocked_until - :s, "
            "last_failed_at = last_failed_at - :s",
            {"s": seconds},
        )


async def sixty_guesses(clients: list[httpx.AsyncClient], username: str) -> list[int]:
    """Five guesses from each of twelve addresses: each inside every per-address limit."""
    return [await attempt(client, username) for _ in range(5) for client in clients]


async def test_guesses_from_twelve_addresses_at_one_account_get_429(
    clients: list[httpx.AsyncClient],
) -> None:
    statuses = await sixty_guesses(clients, "admin")
    # five free failures, one more that starts the delay, then refusals
    assert statuses == [401] * 6 + [429] * 54


async def test_unknown_accounts_are_counted_the_same_way(
    app: FastAPI, clients: list[httpx.AsyncClient]
) -> None:
    known = await sixty_guesses(clients, "admin")
    unknown = await sixty_guesses(clients, "nobody-at-all")
    assert unknown == known
    # case-normalised as login is: ADMIN is admin
    async with client_for(app, ("192.0.2.99", 1)) as elsewhere:
        assert await attempt(elsewhere, "ADMIN", ADMIN_PASSWORD) == 429


async def test_right_password_after_the_delay_succeeds_and_resets_the_count(
    clients: list[httpx.AsyncClient], services: Services
) -> None:
    for client in clients[:6]:
        assert await attempt(client, "admin") == 401
    # during the delay even the right password is refused, without a hash being computed
    assert await attempt(clients[6], "admin", ADMIN_PASSWORD) == 429
    await elapse(services, DELAY)
    assert await attempt(clients[7], "admin", ADMIN_PASSWORD) == 200
    # the real user is not locked out: the count started over
    assert [await attempt(client, "admin") for client in clients[:6]] == [401] * 6
    assert await attempt(clients[6], "admin") == 429


async def test_the_delay_doubles_up_to_its_cap_and_refusals_do_not_extend_it(
    clients: list[httpx.AsyncClient], services: Services
) -> None:
    turn = iter(range(1000))

    def next_client() -> httpx.AsyncClient:  # spreads attempts below every per-address limit
        return clients[next(turn) % len(clients)]

    for _ in range(6):
        assert await attempt(next_client(), "admin") == 401
    waits = []
    for _ in range(5):
        refusals = [
            await next_client().post("/auth/login", json={"username": "admin", "password": WRONG})
            for _ in range(3)
        ]
        retry_after = [assert_throttled(response) for response in refusals]
        waits.append(retry_after[0])
        # refused attempts are not counted: the wait does not grow while it runs
        assert retry_after == sorted(retry_after, reverse=True)
        await elapse(services, retry_after[0])
        assert await attempt(next_client(), "admin") == 401
    expected = [DELAY, 2 * DELAY, 4 * DELAY, 4 * DELAY, 4 * DELAY]
    # whole seconds, rounded up, of what is left when the refusal is answered
    assert all(want - 5 <= got <= want for got, want in zip(waits, expected, strict=True)), waits


async def test_failures_are_forgotten_after_the_window(
    clients: list[httpx.AsyncClient], services: Services
) -> None:
    for client in clients[:5]:
        assert await attempt(client, "admin") == 401
    await elapse(services, services.settings.rate_limit_account_window_seconds + 1)
    assert [await attempt(client, "admin") for client in clients[:6]] == [401] * 6
    assert await attempt(clients[6], "admin") == 429


async def test_bad_input_is_refused_as_before_and_not_counted(
    clients: list[httpx.AsyncClient],
) -> None:
    malformed: list[dict[str, object]] = [
        {"username": "admin"},
        {"username": "admin", "password": ""},
        {"username": "admin", "password": 5},
        {"username": "admin", "password": WRONG, "extra": 1},
    ]
    for body in malformed * 3:
        response = await clients[0].post("/auth/login", json=body)
        assert response.status_code == 422
        assert response.json()["error"]["code"] == 422
    statuses = [await attempt(client, "admin") for client in clients[1:7]]
    assert statuses == [401] * 6


def test_account_policy_doubles_to_its_cap() -> None:
    policy = AccountPolicy(free=3, delay=2.0, max_delay=10.0, window=60.0)
    assert [policy.delay_after(n) for n in range(1, 9)] == [0, 0, 0, 2, 4, 8, 10, 10]
    assert policy.delay_after(10_000) == 10.0


# The hashing pool


class GatedHasher(PasswordHasher):
    """The real argon2id hasher, whose hashes wait for `gate` (so that tests can hold the
    pool full) and note how many have started."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()
        self.started = 0

    def verify(self, hash: str | bytes, password: str | bytes) -> Literal[True]:
        self.started += 1
        self.gate.wait(30)
        return super().verify(hash, password)


@pytest.fixture
async def gated(services: Services) -> AsyncIterator[GatedHasher]:
    """A pool of one thread and one waiting place, whose hashes wait for the gate."""
    hasher = GatedHasher()
    hasher.gate.set()
    passwords = Passwords(
        hasher, workers=1, queue=1, on_busy=services.metrics.password_hashing_refused.inc
    )
    await passwords.warm_up()
    hasher.gate.clear()
    hasher.started = 0
    services.passwords = passwords
    yield hasher
    hasher.gate.set()
    passwords.close()


async def until(condition: Callable[[], bool]) -> None:
    """Let the event loop run until `condition` holds."""
    async with asyncio.timeout(10):
        while not condition():  # noqa: ASYNC110 (plain counters of the pool, no event to wait on)
            await asyncio.sleep(0)


def login_task(
    client: httpx.AsyncClient, username: str, password: str
) -> asyncio.Task[httpx.Response]:
    body = {"username": username, "password": password}
    return asyncio.create_task(client.post("/auth/login", json=body))


def assert_busy(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"] == "1"
    error = response.json()["error"]
    assert error["code"] == 503
    assert error["message"] == "Too many sign-ins at once; retry after 1 seconds"


async def test_a_full_hashing_pool_refuses_at_once_with_retry_after(
    clients: list[httpx.AsyncClient], services: Services, gated: GatedHasher
) -> None:
    await make_user(services.db, "carol")
    running = login_task(clients[0], "admin", ADMIN_PASSWORD)
    await until(lambda: gated.started == 1)
    waiting = login_task(clients[1], "carol", PASSWORD)
    await until(lambda: services.passwords.pool.busy == 2)
    # a third sign-in finds no place: refused without waiting for the others
    assert_busy(await clients[2].post("/auth/login", json={"username": "x", "password": WRONG}))
    assert gated.started == 1
    registry = services.metrics.registry
    assert registry.get_sample_value("orch_password_hashing_refused_total") == 1
    gated.gate.set()
    assert (await running).status_code == 200
    assert (await waiting).status_code == 200
    # the places are free again
    assert services.passwords.pool.busy == 0
    assert await attempt(clients[2], "admin", ADMIN_PASSWORD) == 200


async def test_an_address_that_keeps_failing_waits_behind_a_newcomer(
    clients: list[httpx.AsyncClient], services: Services, gated: GatedHasher
) -> None:
    guesser = clients[1]
    gated.gate.set()
    assert await attempt(guesser, "someone", WRONG) == 401  # a failure on record
    gated.gate.clear()
    gated.started = 0
    running = login_task(clients[0], "admin", WRONG)
    await until(lambda: gated.started == 1)
    guess = login_task(guesser, "someone-else", WRONG)
    await until(lambda: services.passwords.pool.busy == 2)
    # the pool is full, but the newcomer has no failures: the guess gives up its place
    newcomer = login_task(clients[2], "admin", ADMIN_PASSWORD)
    assert_busy(await guess)
    # a second guess from the same address finds no place either
    assert_busy(await guesser.post("/auth/login", json={"username": "y", "password": WRONG}))
    gated.gate.set()
    assert (await running).status_code == 401
    assert (await newcomer).status_code == 200


async def test_user_routes_that_hash_answer_503_when_the_pool_is_full(
    clients: list[httpx.AsyncClient], services: Services, gated: GatedHasher
) -> None:
    running = login_task(clients[0], "admin", ADMIN_PASSWORD)
    await until(lambda: gated.started == 1)
    waiting = login_task(clients[1], "admin", ADMIN_PASSWORD)
    await until(lambda: services.passwords.pool.busy == 2)
    admin = {"Authorization": f"Bearer {services.tokens.issue('admin')}"}
    body = {"username": "dora", "password": PASSWORD, "role": "member"}
    assert_busy(await clients[3].post("/api/v1/users", json=body, headers=admin))
    gated.gate.set()
    assert (await running).status_code == 200
    assert (await waiting).status_code == 200
    assert (await clients[3].post("/api/v1/users", json=body, headers=admin)).status_code == 201


# Several processes on one PostgreSQL


@pytest.fixture
def two_servers(tmp_path: Path) -> Iterator[list[ServerProcess]]:
    with migrated_postgres_database() as url:
        env = {
            "ORCH_DATABASE_URL": url,
            "ORCH_RATE_LIMIT_ENABLED": "true",
            "ORCH_TRUSTED_PROXIES": "127.0.0.1",
            "ORCH_ADMIN_PASSWORD": ADMIN_PASSWORD,
            "ORCH_SECRET_KEY": "throttle-secret-key-" + "t" * 32,
            "ORCH_RATE_LIMIT_ACCOUNT_DELAY_SECONDS": str(DELAY),
        }
        servers = [
            ServerProcess(
                env={**env, "ORCH_DATA_DIR": str(tmp_path / name)},
                log_path=tmp_path / f"{name}.log",
            )
            for name in ("a", "b")
        ]
        try:
            with ThreadPoolExecutor(2) as pool:
                list(pool.map(lambda server: server.start(timeout=90), servers))
            yield servers
        finally:
            for server in servers:
                server.stop()


@pytest.mark.e2e
@pytest.mark.postgres
async def test_two_processes_count_one_accounts_failures_together(
    two_servers: list[ServerProcess],
) -> None:
    async def guess(n: int, password: str = WRONG, address: int = 0) -> httpx.Response:
        server = two_servers[n % 2]
        forwarded = {"X-Forwarded-For": f"203.0.113.{address or n % 12 + 1}"}
        body = {"username": "Admin", "password": password}
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
            return await client.post("/auth/login", json=body, headers=forwarded)

    responses = [await guess(n) for n in range(60)]
    statuses = [response.status_code for response in responses]
    assert statuses == [401] * 6 + [429] * 54
    for response in responses[6:]:
        assert_throttled(response, at_most=DELAY)
    # the right password from a fresh address in either process waits too
    for n in (100, 101):
        assert_throttled(await guess(n, ADMIN_PASSWORD, address=n), at_most=DELAY)
    for server in two_servers:
        assert "Traceback" not in server.logs()


async def test_a_hash_whose_caller_left_keeps_its_place_until_it_ends() -> None:
    hasher = GatedHasher()
    hasher.gate.set()
    passwords = Passwords(hasher, workers=1, queue=0)
    await passwords.warm_up()
    hasher.gate.clear()
    hasher.started = 0
    try:
        password_hash = passwords.hash_sync("a-password")
        left = asyncio.create_task(passwords.verify(password_hash, "a-password"))
        await until(lambda: hasher.started == 1)
        left.cancel()
        with pytest.raises(asyncio.CancelledError):
            await left
        # the thread still hashes: no place for another one yet
        assert passwords.pool.busy == 1
        with pytest.raises(HashingBusy):
            passwords.admit()
        hasher.gate.set()
        await until(lambda: passwords.pool.busy == 0)
        assert await passwords.verify(password_hash, "a-password")
    finally:
        hasher.gate.set()
        passwords.close()
