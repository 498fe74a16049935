"""Real databases for tests: throwaway PostgreSQL databases on the test server, SQLite files.

PostgreSQL tests run when the server at ORCH_TEST_POSTGRES_URL (default: the local one) answers;
with ORCH_TEST_REQUIRE_SERVICES=1 (as in CI) an unreachable server fails the run instead.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import asyncpg
import pytest

from orchestrator.db.migrate import upgrade

POSTGRES_URL = os.environ.get(
    "ORCH_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("ORCH_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
REQUIRE_SERVICES = os.environ.get("ORCH_TEST_REQUIRE_SERVICES") == "1"


def _admin_dsn() -> str:
    return POSTGRES_URL.replace("postgresql+asyncpg://", "postgresql://")


async def _postgres_reachable() -> bool:
    try:
        conn = await asyncio.wait_for(asyncpg.connect(_admin_dsn()), timeout=3)
    except Exception:
        return False
    await conn.close()
    return True


_pg_state: dict[str, bool] = {}


def postgres_available() -> bool:
    if "ok" not in _pg_state:
        _pg_state["ok"] = asyncio.run(_postgres_reachable())
    return _pg_state["ok"]


def _database_url(dsn: str, name: str) -> str:
    base, _, _ = dsn.rpartition("/")
    return f"{base}/{name}"


async def create_postgres_database() -> str:
    """A fresh, empty database; returns its URL."""
    name = f"orch_test_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(_admin_dsn())
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return _database_url(_admin_dsn(), name)


async def drop_postgres_database(url: str) -> None:
    name = url.rsplit("/", 1)[1]
    conn = await asyncpg.connect(_admin_dsn())
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def require_postgres() -> None:
    """Skip the test when PostgreSQL is not reachable, or fail it when CI requires it."""
    if not postgres_available():
        if REQUIRE_SERVICES:
            pytest.fail(f"PostgreSQL is required but not reachable at {POSTGRES_URL}")
        pytest.skip("PostgreSQL is not reachable")


@contextmanager
def migrated_postgres_database() -> Iterator[str]:
    """A fresh database with every migration applied, dropped afterwards (for fixtures that
    run no event loop of their own, such as those of server processes)."""
    require_postgres()
    url = asyncio.run(create_postgres_database())
    try:
        upgrade(url)
        yield url
    finally:
        asyncio.run(drop_postgres_database(url))


def sqlite_url(data_dir: Path) -> str:
    """The URL of the SQLite file a server with this data directory uses by default."""
    return f"sqlite:///{(data_dir / 'orchestrator.db').resolve()}"
