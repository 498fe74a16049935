"""Several server processes on one PostgreSQL database: every change reaches every process."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import asyncpg
import httpx
import pytest

from orchestrator.db import open_database
from orchestrator.db.changelog import Change, latest_revision, record_change
from orchestrator.db.database import PostgresDatabase, postgres_dsn
from orchestrator.db.feed import ChangeFeed
from orchestrator.representation import canonical_json
from tests.changes.support import (
    Stack,
    collect_changes,
    connected,
    drop,
    recv_json,
    server_env,
    subscribe,
    ws_connect,
)
from tests.support.databases import migrated_postgres_database
from tests.support.servers import ServerProcess

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    with migrated_postgres_database() as url:
        yield url


@pytest.fixture(scope="module")
def servers(
    postgres_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[ServerProcess]]:
    root = tmp_path_factory.mktemp("pg")
    # A slow poll: delivery across processes has to come from NOTIFY.
    env = server_env(root / "data", postgres_url, ORCH_CHANGE_POLL_SECONDS="30")
    procs: list[ServerProcess] = []
    try:
        for index in range(2):
            procs.append(
                ServerProcess(env=env, log_path=root / f"server{index}.log").start(timeout=120)
            )
        yield procs
    finally:
        for proc in procs:
            proc.stop()


@pytest.fixture
async def stack(postgres_url: str, servers: list[ServerProcess]) -> AsyncIterator[Stack]:
    db = open_database(postgres_url, timeout=5)
    try:
        yield Stack(database_url=postgres_url, servers=servers, db=db)
    finally:
        await db.close()


def username() -> str:
    return f"u{uuid.uuid4().hex[:10]}"


async def test_1000_writes_through_one_process_reach_a_subscriber_of_the_other(
    stack: Stack,
) -> None:
    token = await stack.user(username())
    async with ws_connect(stack.servers[1], token) as ws:
        await connected(ws)
        ack = await subscribe(ws, ["tasks"])
        assert ack["type"] == "subscribed"

        created: list[dict[str, Any]] = []

        async def writer(client: httpx.AsyncClient, worker: int) -> None:
            for n in range(125):
                created.append(await stack.post_task(client, token, f"w{worker} {n}", server=0))

        received: list[dict[str, Any]] = []

        async def reader() -> None:
            while len(received) < 1000:
                received.append(await recv_json(ws, within=120))

        reading = asyncio.create_task(reader())
        async with httpx.AsyncClient(timeout=30) as client:
            await asyncio.gather(*(writer(client, w) for w in range(8)))
        async with asyncio.timeout(60):
            await reading
    revisions = [change["revision"] for change in received]
    assert revisions == sorted(set(revisions)), "strictly increasing: in order, no duplicate"
    assert all(change["op"] == "create" for change in received)
    # Every write arrived, each with the body the API answered with.
    assert {c["id"]: c["data"] for c in received} == {task["id"]: task for task in created}


async def test_transactions_committing_in_opposite_order_arrive_in_revision_order(
    stack: Stack,
) -> None:
    token = await stack.user(username())
    first_started = asyncio.Event()
    second_committed = asyncio.Event()
    revisions: dict[str, int] = {}

    async def write(name: str, *, wait_for: asyncio.Event | None, then: asyncio.Event) -> None:
        body = {"id": str(uuid.uuid4()), "title": name}
        async with stack.db.transaction() as tx:
            await tx.execute("SELECT 1")
            then.set() if name == "first" else None
            if wait_for is not None:
                await wait_for.wait()
            revisions[name] = await record_change(
                tx,
                collection="tasks",
                op="create",
                resource_id=body["id"],
                data=canonical_json(body),
            )
        if name == "second":
            then.set()

    async with ws_connect(stack.servers[0], token) as ws:
        await connected(ws)
        ack = await subscribe(ws, ["tasks"])
        first = asyncio.create_task(write("first", wait_for=second_committed, then=first_started))
        await first_started.wait()
        await write("second", wait_for=None, then=second_committed)
        await first
        received = await collect_changes(ws, until_revision=revisions["first"])
    # The one that started first committed last, so it took the later revision.
    assert revisions["second"] < revisions["first"]
    assert [(c["revision"], c["data"]["title"]) for c in received] == [
        (revisions["second"], "second"),
        (revisions["first"], "first"),
    ]
    assert ack["revision"] < revisions["second"]


async def test_resume_on_another_process(stack: Stack) -> None:
    token = await stack.user(username())
    start = await latest_revision(stack.db)
    written = [await stack.write_task(f"r{n}") for n in range(20)]
    async with ws_connect(stack.servers[0], token) as ws:
        await connected(ws)
        await subscribe(ws, ["tasks"], since=start)
        part = [await recv_json(ws) for _ in range(7)]
        drop(ws)
    async with ws_connect(stack.servers[1], token) as ws:
        await connected(ws)
        await subscribe(ws, ["tasks"], since=part[-1]["revision"])
        rest = await collect_changes(ws, until_revision=written[-1])
    assert [c["revision"] for c in part + rest] == written


def listen_connection(feed: ChangeFeed) -> Any:
    """The feed's LISTEN connection, once it has one."""
    return getattr(feed.listening, "connection", None)


def listen_pid(feed: ChangeFeed) -> int:
    pid: int = listen_connection(feed).get_server_pid()
    return pid


async def test_listener_comes_back_after_its_connection_is_killed(postgres_url: str) -> None:
    db = open_database(postgres_url, timeout=5)
    other = open_database(postgres_url, timeout=5)
    assert isinstance(db, PostgresDatabase)
    feed = ChangeFeed(db, poll_seconds=30)  # too slow to matter: delivery must be by NOTIFY
    seen: list[Change] = []
    feed.add_listener(seen.append)
    await feed.start()
    try:
        deadline = asyncio.get_running_loop().time() + 10
        while listen_connection(feed) is None:
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.05)
        old_pid = listen_pid(feed)
        # What a database restart does to the listening connection.
        admin = await asyncpg.connect(postgres_dsn(postgres_url).rsplit("/", 1)[0] + "/postgres")
        try:
            await admin.execute("SELECT pg_terminate_backend($1)", old_pid)
        finally:
            await admin.close()
        while listen_connection(feed) is None or listen_pid(feed) == old_pid:
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.05)
        async with other.transaction() as tx:
            revision = await record_change(
                tx,
                collection="tasks",
                op="create",
                resource_id=str(uuid.uuid4()),
                data=b"{}",
            )
        assert await feed.wait_past(revision, within=10)
        assert seen[-1].revision == revision
    finally:
        await feed.stop()
        await db.close()
        await other.close()
