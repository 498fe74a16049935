"""The database port: SQLite settings, concurrent writers, a held lock never stalls the loop."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
from datetime import UTC
from pathlib import Path
from typing import Any

import httpx
import pytest

from orchestrator.auth.users import create_user, get_user, list_users
from orchestrator.db import open_database
from orchestrator.db.database import CHECKPOINT_EVERY_WRITES, SqliteDatabase
from orchestrator.services import Services
from tests.support.users import ADMIN_PASSWORD

FAKE_HASH = "$argon2id$v=19$m=65536,t=3,p=4$not-a-real-hash"


# SQLite-specific tests take the backend fixture's place with one value.
sqlite_only = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)


@sqlite_only
async def test_sqlite_runs_in_wal_with_foreign_keys_and_a_busy_timeout(
    services: Services, backend: str
) -> None:
    db = services.db
    assert isinstance(db, SqliteDatabase)
    for pragma, expected in (("journal_mode", "wal"), ("foreign_keys", 1)):
        row: Any = await db.fetch_one(f"PRAGMA {pragma}")
        assert row[0] == expected
    # List reads (on threads) wait for a lock rather than fail. Writes and one-row reads run
    # on the event loop and wait without blocking it (see the held-lock tests).
    listed: Any = await db.fetch_all("PRAGMA busy_timeout")
    assert listed[0][0] >= 5000


async def test_a_one_row_read_that_must_wait_for_a_lock_waits_off_the_event_loop(
    tmp_path: Path,
) -> None:
    """One-row reads run on the event loop; one that SQLite makes wait goes to a thread."""
    path = tmp_path / "locked.db"
    # A connection in exclusive locking mode, first on the file, keeps every other one out.
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db = SqliteDatabase(path)
    try:
        holder.execute("PRAGMA locking_mode=EXCLUSIVE")
        holder.execute("PRAGMA journal_mode=WAL")
        holder.execute("CREATE TABLE t (x INTEGER)")
        holder.execute("INSERT INTO t VALUES (42)")
        read = asyncio.create_task(db.fetch_one("SELECT x FROM t"))
        for _ in range(100):  # the loop keeps running other work while the read waits
            await asyncio.sleep(0)
        assert not read.done()
        holder.close()
        row: Any = await asyncio.wait_for(read, 30)
        assert row[0] == 42
    finally:
        holder.close()
        await db.close()


async def test_timestamps_are_utc_with_an_explicit_offset(services: Services) -> None:
    await create_user(services.db, username="tess", password_hash=FAKE_HASH, role="viewer")
    user = await get_user(services.db, username="TESS")
    assert user is not None
    assert user.created_at.tzinfo is not None
    assert user.created_at.utcoffset() is not None
    assert user.created_at.utcoffset().total_seconds() == 0  # type: ignore[union-attr]
    assert user.created_at.astimezone(UTC) == user.created_at
    if services.db.dialect == "sqlite":
        row = await services.db.fetch_one("SELECT created_at FROM users WHERE username = 'tess'")
        assert row is not None
        assert row["created_at"].endswith("+00:00")


_CLI_WRITER = """
import asyncio, sys
from orchestrator.auth.users import create_user
from orchestrator.db import open_database

async def main():
    db = open_database(sys.argv[1], timeout=5)
    try:
        await asyncio.gather(*(
            create_user(db, username=f"cli-{i}", password_hash="h", role="member")
            for i in range(int(sys.argv[2]))
        ))
    finally:
        await db.close()

asyncio.run(main())
"""


@sqlite_only
async def test_concurrent_writers_on_one_file_never_see_database_is_locked(
    settings: object, services: Services, backend: str
) -> None:
    """Two in-process databases and another process write the same file at once."""
    assert isinstance(services.db, SqliteDatabase)
    url = f"sqlite:///{services.db.path}"
    other = open_database(url, timeout=5)
    try:
        child = await asyncio.create_subprocess_exec(
            sys.executable, "-c", _CLI_WRITER, url, "30", stderr=subprocess.PIPE
        )
        writes = [
            create_user(db, username=f"{name}-{i}", password_hash="h", role="member")
            for i in range(30)
            for name, db in (("one", services.db), ("two", other))
        ]
        await asyncio.gather(*writes)
        _, stderr = await child.communicate()
        assert child.returncode == 0, stderr.decode()
        assert b"locked" not in stderr
        names = {u.username for u in await list_users(services.db)}
        assert len(names) == 1 + 30 * 3
    finally:
        await other.close()


@sqlite_only
async def test_a_held_write_lock_stalls_neither_health_nor_reads(
    services: Services, client: httpx.AsyncClient, backend: str
) -> None:
    """Another connection holds the write lock: a write waits, everything else answers."""
    assert isinstance(services.db, SqliteDatabase)
    # Logging in writes (it starts a session), so it happens before the lock is taken.
    login = await client.post("/auth/login", json={"username": "admin", "password": ADMIN_PASSWORD})
    assert login.status_code == 200
    auth = {"Authorization": f"Bearer {login.json()['access_token']}"}
    holder = sqlite3.connect(
        services.db.path, isolation_level=None, timeout=30, check_same_thread=False
    )
    try:
        # Off the loop: a background write of the app (the lease sweeper) may be mid-transaction
        # and needs the loop to commit before the holder can take the lock.
        await asyncio.to_thread(holder.execute, "BEGIN IMMEDIATE")
        write = asyncio.create_task(
            create_user(services.db, username="waiting", password_hash="h", role="member")
        )
        # The write holds the in-process write lock once its BEGIN IMMEDIATE is on its way.
        while not services.db._write_lock.locked():  # noqa: ASYNC110
            await asyncio.sleep(0)
        assert (await client.get("/health")).status_code == 200
        assert (await client.get("/healthz")).status_code == 200
        assert (await client.get("/api/v1/users/me", headers=auth)).status_code == 200
        assert (await client.get("/api/v1/jobs", headers=auth)).status_code == 200
        assert await get_user(services.db, username="admin") is not None
        assert not write.done()  # all of the above answered while the write was still waiting
        holder.execute("COMMIT")
        user = await asyncio.wait_for(write, 30)
        assert user.username == "waiting"
    finally:
        holder.close()


async def test_the_write_ahead_log_is_checkpointed_as_writes_go_on(tmp_path: Path) -> None:
    """Writes never checkpoint on the event loop, yet the WAL file does not grow without end."""
    path = tmp_path / "busy.db"
    wal = path.with_name("busy.db-wal")
    db = SqliteDatabase(path)
    try:
        async with db.transaction() as tx:
            await tx.execute("CREATE TABLE t (x TEXT)")
        sizes = []
        for _ in range(3):
            for _ in range(CHECKPOINT_EVERY_WRITES - 1):
                async with db.transaction() as tx:
                    await tx.execute("INSERT INTO t VALUES (:x)", {"x": "x" * 2000})
                await asyncio.sleep(0)  # as a server does between requests
            sizes.append(wal.stat().st_size)
            async with db.transaction() as tx:  # the commit that starts a checkpoint
                await tx.execute("INSERT INTO t VALUES (:x)", {"x": "x" * 2000})
            # It syncs the log first without the write lock, then copies it back holding it.
            while db._checkpointing is not None and not db._checkpointing.done():  # noqa: ASYNC110
                await asyncio.sleep(0.001)
        # Without checkpoints the log would hold every commit: three times the first size.
        assert sizes[2] < 1.5 * sizes[0]
        count: Any = await db.fetch_one("SELECT count(*) FROM t")
        assert count[0] == 3 * CHECKPOINT_EVERY_WRITES
    finally:
        await db.close()
