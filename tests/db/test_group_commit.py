"""SQLite's group commit: writers queued for the write lock share one commit, yet each write is
committed when its transaction returns, a failing writer undoes only its own statements, and no
writer is left waiting for a commit when those queued behind it give up."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from orchestrator.db import ConstraintViolation, DatabaseUnavailable, Transaction
from orchestrator.db.database import SqliteDatabase


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[SqliteDatabase]:
    database = SqliteDatabase(tmp_path / "group.db")
    async with database.transaction() as tx:
        await tx.execute("CREATE TABLE t (name TEXT PRIMARY KEY)")
    try:
        yield database
    finally:
        await database.close()


def committed(db: SqliteDatabase) -> set[str]:
    """The names another connection sees: only committed rows."""
    other = sqlite3.connect(db.path)
    try:
        return {name for (name,) in other.execute("SELECT name FROM t")}
    finally:
        other.close()


async def insert(tx: Transaction, name: str) -> None:
    await tx.execute("INSERT INTO t (name) VALUES (:name)", {"name": name})
    await asyncio.sleep(0)  # the others queue up for the lock meanwhile


async def test_each_write_is_committed_when_its_transaction_returns(db: SqliteDatabase) -> None:
    seen_at_return: dict[str, bool] = {}

    async def write(name: str) -> None:
        async with db.transaction() as tx:
            await insert(tx, name)
        seen_at_return[name] = name in committed(db)

    names = [f"w{n}" for n in range(80)]
    await asyncio.gather(*(write(name) for name in names))
    assert seen_at_return == dict.fromkeys(names, True)


async def test_a_failing_writer_undoes_only_its_own_statements(db: SqliteDatabase) -> None:
    async with db.transaction() as tx:
        await tx.execute("INSERT INTO t (name) VALUES ('taken')")

    async def write(n: int) -> str:
        async with db.transaction() as tx:
            await insert(tx, f"w{n}")
            if n % 3 == 0:  # then breaks the primary key: the whole block must be undone
                await insert(tx, "taken")
        return f"w{n}"

    results = await asyncio.gather(*(write(n) for n in range(60)), return_exceptions=True)
    failed = {n for n, result in enumerate(results) if isinstance(result, ConstraintViolation)}
    assert failed == {n for n in range(60) if n % 3 == 0}
    assert all(isinstance(r, str) for n, r in enumerate(results) if n not in failed)
    assert committed(db) == {"taken"} | {f"w{n}" for n in range(60) if n not in failed}


async def test_a_write_is_committed_when_the_writers_queued_behind_it_give_up(
    db: SqliteDatabase,
) -> None:
    """The first writer ends while two others wait, so it leaves its commit to them; both are
    cancelled before they get the lock."""
    go = asyncio.Event()
    queued: list[asyncio.Task[None]] = []

    async def first() -> None:
        async with db.transaction() as tx:
            await insert(tx, "first")
            await go.wait()
            for task in queued:
                task.cancel()

    async def behind(name: str) -> None:
        async with db.transaction() as tx:
            await insert(tx, name)

    writing = asyncio.create_task(first())
    await asyncio.sleep(0)
    queued.extend(asyncio.create_task(behind(name)) for name in ("second", "third"))
    await asyncio.sleep(0)
    go.set()
    await asyncio.wait_for(writing, 10)
    assert committed(db) == {"first"}
    for task in queued:
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_a_writer_cancelled_while_it_waits_for_the_commit_still_notifies(
    db: SqliteDatabase,
) -> None:
    """Its write is committed with the group, so the process's listeners hear of it."""
    heard: list[str | None] = []
    listening = await db.listen("created", heard.append)
    go = asyncio.Event()

    async def first() -> None:
        async with db.transaction() as tx:
            await tx.execute("INSERT INTO t (name) VALUES ('cancelled-writer')")
            await tx.notify("created", "cancelled-writer")
            await go.wait()  # meanwhile the second writer queues for the lock

    async def second() -> None:
        async with db.transaction() as tx:
            await tx.execute("INSERT INTO t (name) VALUES ('second')")

    try:
        writing = asyncio.create_task(first())
        await asyncio.sleep(0)
        behind = asyncio.create_task(second())
        await asyncio.sleep(0)
        go.set()
        await asyncio.sleep(0)  # the first's block ends; it waits for the group's commit
        writing.cancel()
        with pytest.raises(asyncio.CancelledError):
            await writing
        await asyncio.wait_for(behind, 10)
        for _ in range(100):
            if heard:
                break
            await asyncio.sleep(0)
        assert heard == ["cancelled-writer"]
        assert committed(db) == {"cancelled-writer", "second"}
    finally:
        await listening.close()


async def test_when_a_groups_transaction_is_lost_every_writer_in_it_fails(
    db: SqliteDatabase,
) -> None:
    """No writer whose work went with the transaction may return as if it were committed."""
    go = asyncio.Event()

    async def first() -> None:
        async with db.transaction() as tx:
            await tx.execute("INSERT INTO t (name) VALUES ('first')")
            await go.wait()  # meanwhile the second writer queues for the lock

    async def second() -> None:
        async with db.transaction() as tx:
            await tx.execute("INSERT INTO t (name) VALUES ('second')")
            await tx.execute("ROLLBACK")  # the whole transaction ends, the first's work too
            raise RuntimeError("the second writer's own failure")

    writing = asyncio.create_task(first())
    await asyncio.sleep(0)
    behind = asyncio.create_task(second())
    await asyncio.sleep(0)
    go.set()
    with pytest.raises(DatabaseUnavailable):
        await asyncio.wait_for(writing, 10)
    with pytest.raises(RuntimeError, match="own failure"):
        await behind
    assert committed(db) == set()
    async with db.transaction() as tx:  # and the next writer starts afresh
        await tx.execute("INSERT INTO t (name) VALUES ('next')")
    assert committed(db) == {"next"}
