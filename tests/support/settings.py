"""Settings of an in-process app under test."""

from __future__ import annotations

from pathlib import Path

from orchestrator.config import Settings
from tests.support.users import ADMIN_PASSWORD


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
