"""Apps with quick sweeps and backoffs, as the worker tests use."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.config import Settings
from tests.support.settings import make_settings


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return make_settings(
        database_url,
        tmp_path / "data",
        lease_sweep_seconds=0.2,
        retry_backoff_seconds=0.2,
        change_poll_seconds=0.2,
    )
