"""A live server per backend for the trust tests, and snapshots of everything it stored."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest

from tests.server import ServerProcess
from tests.support.databases import (
    create_postgres_database,
    drop_postgres_database,
    require_postgres,
)
from tests.trust.live import admin_token, start_server


@dataclass
class Live:
    server: ServerProcess
    backend: str
    database_url: str
    token: str

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


Snapshot = dict[str, object]


async def _pg_snapshot(url: str) -> Snapshot:
    conn = await asyncpg.connect(url)
    try:
        tables = [
            r["tablename"]
            for r in await conn.fetch(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename"
            )
        ]
        result: Snapshot = {}
        for table in tables:
            rows = await conn.fetch(f'SELECT * FROM "{table}"')
            result[table] = sorted(repr(sorted(dict(r).items())) for r in rows)
        return result
    finally:
        await conn.close()


def _sqlite_snapshot(path: Path) -> Snapshot:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"
            )
        ]
        result: Snapshot = {}
        for table in tables:
            rows = conn.execute(f'SELECT * FROM "{table}"').fetchall()
            result[table] = sorted(repr(r) for r in rows)
        return result
    finally:
        conn.close()


def snapshot(live: Live) -> Snapshot:
    """Every row of every table: the database is unchanged when two snapshots are equal."""
    if live.backend == "postgres":
        return asyncio.run(_pg_snapshot(live.database_url))
    return _sqlite_snapshot(Path(live.database_url.split(":///", 1)[1]))


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def live(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Live]:
    """One real server per backend for the whole module."""
    backend: str = request.param
    if backend == "postgres":
        require_postgres()
    tmp = tmp_path_factory.mktemp(f"live-{backend}")
    if backend == "postgres":
        url = asyncio.run(create_postgres_database())
    else:
        url = f"sqlite:///{tmp / 'data' / 'orchestrator.db'}"
    server = start_server(tmp, url)
    try:
        yield Live(server=server, backend=backend, database_url=url, token=admin_token(server.url))
    finally:
        server.stop()
        if backend == "postgres":
            asyncio.run(drop_postgres_database(url))
