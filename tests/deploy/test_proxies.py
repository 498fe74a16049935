"""`deploy/nginx.conf` and `deploy/haproxy.cfg` in front of two processes on PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from websockets.asyncio.client import ClientConnection, connect

from orchestrator.db.migrate import upgrade
from tests.deploy.proxies import ProxyProcess, haproxy, nginx
from tests.support.databases import (
    create_postgres_database,
    drop_postgres_database,
    require_postgres,
)
from tests.support.servers import ServerProcess

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

ADMIN_PASSWORD = "proxied-admin-password"
LOGIN_IP_LIMIT = 2
STREAM_CAP = 3  # live connections per user and process
# How soon a change written through one process reaches a client of the other, via a proxy.
DELIVERY_SECONDS = 0.1


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[ServerProcess]]:
    require_postgres()
    root = tmp_path_factory.mktemp("proxied")
    url = asyncio.run(create_postgres_database())
    env = {
        "ORCH_DATABASE_URL": url,
        "ORCH_DATA_DIR": str(root / "data"),
        "ORCH_SECRET_KEY": "proxied-secret-" + "s" * 40,
        "ORCH_ADMIN_PASSWORD": ADMIN_PASSWORD,
        "ORCH_TRUSTED_PROXIES": "127.0.0.1",
        "ORCH_RATE_LIMIT_ENABLED": "true",
        "ORCH_RATE_LIMIT_LOGIN_IP": f"{LOGIN_IP_LIMIT}/minute",
        "ORCH_WS_MAX_CONNECTIONS_PER_USER": str(STREAM_CAP),
        # Delivery across processes has to come from NOTIFY, not from the poll.
        "ORCH_CHANGE_POLL_SECONDS": "30",
    }
    procs: list[ServerProcess] = []
    try:
        upgrade(url)
        for index in range(2):
            log = root / f"server{index}.log"
            procs.append(ServerProcess(env=env, log_path=log).start(timeout=120))
        yield procs
    finally:
        for proc in procs:
            proc.stop()
        asyncio.run(drop_postgres_database(url))
    for proc in procs:
        assert '"level":"error"' not in proc.logs(), proc.logs()[-3000:]


@pytest.fixture(params=["nginx", "haproxy"])
def proxy(
    request: pytest.FixtureRequest, servers: list[ServerProcess], tmp_path: Path
) -> Iterator[ProxyProcess]:
    make = nginx if request.param == "nginx" else haproxy
    proc = make(tmp_path, [server.port for server in servers]).start()
    try:
        yield proc
    finally:
        proc.stop()


async def login(proxy: ProxyProcess, address: str) -> dict[str, str]:
    async with client(proxy.url, address) as http:
        response = await http.post(
            "/auth/login", json={"username": "admin", "password": ADMIN_PASSWORD}
        )
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def client(base_url: str, address: str = "127.0.0.1") -> httpx.AsyncClient:
    """An HTTP client whose connections come from `address` (any of 127.0.0.0/8)."""
    transport = httpx.AsyncHTTPTransport(local_address=address)
    return httpx.AsyncClient(base_url=base_url, transport=transport, timeout=10)


@contextlib.asynccontextmanager
async def sse_events(
    http: httpx.AsyncClient, headers: dict[str, str]
) -> AsyncIterator[asyncio.Queue[dict[str, Any]]]:
    """The SSE stream's events (as dicts of their fields) in a queue, as they arrive."""
    events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def read() -> None:
        async with http.stream("GET", "/api/v1/changes", headers=headers) as response:
            assert response.status_code == 200
            event: dict[str, Any] = {}
            async for line in response.aiter_lines():
                if not line:
                    if "data" in event:  # not the opening `retry:`
                        events.put_nowait(event)
                    event = {}
                elif not line.startswith(":"):
                    name, _, value = line.partition(": ")
                    event[name] = value

    reader = asyncio.create_task(read())
    try:
        yield events
    finally:
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader


async def next_change(ws: ClientConnection) -> dict[str, Any]:
    while True:
        message: dict[str, Any] = orjson.loads(await ws.recv())
        if message["type"] == "change":
            return message


async def next_sse_change(events: asyncio.Queue[dict[str, Any]]) -> dict[str, Any]:
    while True:
        event = await events.get()
        if "event" not in event:
            body: dict[str, Any] = orjson.loads(event["data"])
            return body


async def test_login_304_and_live_changes_through_the_proxy(
    proxy: ProxyProcess, servers: list[ServerProcess]
) -> None:
    async with client(proxy.url) as http:
        response = await http.post(
            "/auth/login", json={"username": "admin", "password": ADMIN_PASSWORD}
        )
        assert response.status_code == 200, response.text
        auth = {"Authorization": f"Bearer {response.json()['access_token']}"}
        listed = await http.get("/api/v1/collab/state/tasks", headers=auth)
        assert listed.status_code == 200
        again = await http.get(
            "/api/v1/collab/state/tasks", headers={**auth, "If-None-Match": listed.headers["etag"]}
        )
        assert again.status_code == 304
        assert again.headers["etag"] == listed.headers["etag"]

        async with (
            connect(f"{proxy.ws_url}/ws", additional_headers=auth) as ws,
            sse_events(http, auth) as events,
        ):
            assert orjson.loads(await ws.recv())["type"] == "connection"
            await ws.send(orjson.dumps({"type": "subscribe", "collections": ["tasks"]}).decode())
            assert orjson.loads(await ws.recv())["type"] == "subscribed"
            subscribed = await asyncio.wait_for(events.get(), 10)
            assert subscribed["event"] == "subscribed"
            # One write through each process: one of them is not the one the client is on.
            for server in servers:
                async with client(server.url) as direct:
                    created = await direct.post(
                        "/api/v1/collab/tasks", headers=auth, json={"title": f"via {server.port}"}
                    )
                    # From the write's acknowledgement (the POST's own cost, which a loaded
                    # machine stretches, is not the delivery's).
                    sent = time.monotonic()
                    assert created.status_code == 201, created.text
                    task_id = created.json()["id"]
                    over_ws = await asyncio.wait_for(next_change(ws), 5)
                    ws_seconds = time.monotonic() - sent
                    over_sse = await asyncio.wait_for(next_sse_change(events), 5)
                    sse_seconds = time.monotonic() - sent
                assert over_ws["id"] == over_sse["id"] == task_id
                assert ws_seconds < DELIVERY_SECONDS, f"WebSocket took {ws_seconds:.3f} s"
                assert sse_seconds < DELIVERY_SECONDS, f"SSE took {sse_seconds:.3f} s"


async def test_rate_limits_count_the_client_behind_the_proxy(proxy: ProxyProcess) -> None:
    base = 10 if proxy.name == "nginx" else 20
    guesser, bystander = f"127.0.0.{base + 1}", f"127.0.0.{base + 2}"

    def wrong(who: str, n: int) -> dict[str, str]:
        # A new account name each time: what counts here is the client's address, not the
        # failures of one account (which have their own throttle, and would lock out the
        # admin that the other tests of this proxy sign in as).
        return {"username": f"{who}-{proxy.name}-{n}", "password": "not-the-password"}

    async with client(proxy.url, guesser) as http:
        # Made-up addresses in X-Forwarded-For do not give the guesser fresh budgets. Each
        # process counts for itself (no Redis here): at most twice the limit pass.
        statuses = []
        for n in range(2 * LOGIN_IP_LIMIT + 1):
            response = await http.post(
                "/auth/login",
                json=wrong("guesser", n),
                headers={"X-Forwarded-For": f"198.51.100.{n}"},
            )
            statuses.append(response.status_code)
        assert set(statuses) == {401, 429}, statuses
        assert statuses.index(429) >= LOGIN_IP_LIMIT
    # Another client behind the same proxy has its own budget on every process.
    async with client(proxy.url, bystander) as http:
        for n in range(LOGIN_IP_LIMIT):
            response = await http.post("/auth/login", json=wrong("bystander", n))
            assert response.status_code == 401, response.text


async def test_a_stream_whose_client_left_is_released_at_once(proxy: ProxyProcess) -> None:
    auth = await login(proxy, "127.0.0.30" if proxy.name == "nginx" else "127.0.0.31")

    async def open_streams(count: int) -> tuple[list[int], contextlib.AsyncExitStack]:
        """Open `count` streams, each on its own connection; their statuses, and their closer."""
        streams = contextlib.AsyncExitStack()
        statuses = []
        for _ in range(count):
            http = await streams.enter_async_context(client(proxy.url))
            response = await streams.enter_async_context(
                http.stream("GET", "/api/v1/changes", headers=auth)
            )
            statuses.append(response.status_code)
        return statuses, streams

    # Two processes, each with its cap: one more than both hold is refused.
    statuses, streams = await open_streams(2 * STREAM_CAP + 1)
    assert sorted(statuses) == [200] * 2 * STREAM_CAP + [429], statuses
    await streams.aclose()  # the clients go away without a word to the servers
    # Reconnecting at once (as EventSource does, after its retry of 2 s) finds room again.
    async with asyncio.timeout(3):
        while True:
            statuses, streams = await open_streams(2 * STREAM_CAP)
            await streams.aclose()
            if statuses == [200] * 2 * STREAM_CAP:
                break
