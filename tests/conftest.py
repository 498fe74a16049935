"""Fixtures: apps on real SQLite files and real PostgreSQL databases, and real server processes.

PostgreSQL tests run when the server at ORCH_TEST_POSTGRES_URL (default: the local one) answers;
with ORCH_TEST_REQUIRE_SERVICES=1 (as in CI) an unreachable server fails the run instead.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import httpx
import pytest
from fastapi import FastAPI

from orchestrator.app import create_app
from orchestrator.config import Settings
from orchestrator.db.migrate import upgrade
from orchestrator.services import Services
from tests.factories import ADMIN_PASSWORD

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


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest) -> str:
    """Run the test once per database backend."""
    name: str = request.param
    if name == "postgres":
        require_postgres()
    return name


@pytest.fixture
async def database_url(backend: str, tmp_path: Path) -> AsyncIterator[str]:
    """A migrated, empty database of the chosen backend."""
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'orchestrator.db'}"
        await asyncio.to_thread(upgrade, url)
        yield url
        return
    url = await create_postgres_database()
    try:
        await asyncio.to_thread(upgrade, url)
        yield url
    finally:
        await drop_postgres_database(url)


def make_settings(database_url: str, data_dir: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "environment": "test",
        "database_url": database_url,
        "data_dir": data_dir,
        "secret_key": "test-secret-key-" + "x" * 32,
        "admin_password": ADMIN_PASSWORD,
        "change_poll_seconds": 0.2,
        # Suites log in and fuzz freely; rate-limit tests opt back in.
        "rate_limit_enabled": False,
    }
    values.update(overrides)
    return Settings.model_validate(values)


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return make_settings(database_url, tmp_path / "data")


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    """The app with its lifespan running (database open, admin created, change feed on)."""
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
def services(app: FastAPI) -> Services:
    result: Services = app.state.services
    return result


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
