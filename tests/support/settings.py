"""Settings of an in-process app under test."""

from __future__ import annotations

from pathlib import Path

from orchestrator.config import Settings
from tests.support.users import ADMIN_PASSWORD

# The suite runs four workers beside PostgreSQL on two cores: a statement can wait longer than
# production's 1.5 s for its turn without anything being wrong. Tests of outages (503 within
# 2 s) set the production timeout themselves.
SUITE_DB_TIMEOUT_SECONDS = 10.0


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
        "db_timeout_seconds": SUITE_DB_TIMEOUT_SECONDS,
    }
    values.update(overrides)
    return Settings.model_validate(values)
