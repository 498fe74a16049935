"""Retention: the change log is pruned after its window, in the background."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.changes.log import oldest_retained_revision
from orchestrator.config import Settings
from orchestrator.services import Services
from tests.changes.support import until
from tests.changes.test_hub import write
from tests.conftest import make_settings


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return make_settings(
        database_url,
        tmp_path / "data",
        change_retention_hours=0.0003,  # about one second
        change_prune_interval_seconds=0.1,
    )


async def test_old_changes_are_pruned_after_the_retention_window(services: Services) -> None:
    first = await write(services.db, "old")
    last = await write(services.db, "newest")

    async def pruned() -> bool:
        return (await oldest_retained_revision(services.db) or 0) > first

    await until(pruned, within=20)
    # The newest row always stays, so that "since the latest" never needs a resync.
    assert await oldest_retained_revision(services.db) == last
