"""Live servers for the trust tests: one real process per test, on SQLite or PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.server import ServerProcess
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
