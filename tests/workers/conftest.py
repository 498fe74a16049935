"""Apps with short leases, sweeps and backoffs, so lease expiry is quick to observe."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.config import Settings
from tests.support.settings import make_settings

FAST = {
    "lease_sweep_seconds": 0.2,
    "retry_backoff_seconds": 0.2,
    "retry_backoff_max_seconds": 5.0,
    "change_poll_seconds": 0.2,
}


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return make_settings(database_url, tmp_path / "data", **FAST)
