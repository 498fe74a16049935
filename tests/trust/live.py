"""Live servers for the trust tests (one real process per test or module, on SQLite or
PostgreSQL), and snapshots of everything one stored."""

from __future__ import annotations

import asyncio
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx

from tests.support.servers import ServerProcess
from tests.support.users import ADMIN_PASSWORD

SECRET = "trust-test-secret-key-" + "x" * 32


def server_env(data_dir: Path, database_url: str | None, **extra: str) -> dict[str, str]:
    """The environment of a test-mode server; `database_url` None means embedded SQLite."""
    env = {
        "ORCH_ENVIRONMENT": "test",
        "ORCH_DATA_DIR": str(data_dir),
        "ORCH_ADMIN_PASSWORD": ADMIN_PASSWORD,
        "ORCH_SECRET_KEY": SECRET,
        "ORCH_CHANGE_POLL_SECONDS": "0.2",
        # A fuzzer's claim may ask to wait 30 s for work; keep such long polls short here.
        "ORCH_CLAIM_MAX_WAIT_SECONDS": "0.2",
        "ORCH_LOG_LEVEL": "WARNING",
        # These tests log in and write far faster than any person; the limiter has its own tests.
        "ORCH_RATE_LIMIT_ENABLED": "false",
    }
    if database_url is not None:
        env["ORCH_DATABASE_URL"] = database_url
    env.update(extra)
    return env


def admin_token(base_url: str) -> str:
    response = httpx.post(
        f"{base_url}/auth/login",
        json={"username": "admin", "password": ADMIN_PASSWORD},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


def start_server(tmp_path: Path, database_url: str | None, **extra: str) -> ServerProcess:
    tmp_path.mkdir(parents=True, exist_ok=True)
    return ServerProcess(
        env=server_env(tmp_path / "data", database_url, **extra),
        log_path=tmp_path / "server.log",
    ).start(timeout=120)


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
