"""Retention: the change log is pruned after its window, in the background."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from orchestrator.config import Settings
from orchestrator.db.changelog import oldest_retained_revision
from orchestrator.services import Services
from tests.changes.support import until, write_task
from tests.support.settings import make_settings


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return make_settings(
        database_url,
        tmp_path / "data",
        change_retention_hours=0.0003,  # about one second
        change_prune_interval_seconds=0.1,
    )


async def test_old_changes_are_pruned_after_the_retention_window(services: Services) -> None:
    first = await write_task(services.db, "old")
    last = await write_task(services.db, "newest")

    async def pruned() -> bool:
        return (await oldest_retained_revision(services.db) or 0) > first

    await until(pruned, within=20)
    # The newest row always stays, so that "since the latest" never needs a resync.
    assert await oldest_retained_revision(services.db) == last


async def test_idempotency_keys_past_their_24_hours_are_pruned(services: Services) -> None:
    now = datetime.now(UTC)
    for key, age in (("stale", timedelta(hours=25)), ("fresh", timedelta(hours=1))):
        async with services.db.transaction() as tx:
            await tx.execute(
                "INSERT INTO idempotency_keys (user_id, key, request_hash, status_code, "
                "resource_id, body, created_at) VALUES (:user, :key, 'h', 201, NULL, '{}', :at)",
                {"user": "u1", "key": key, "at": now - age},
            )

    async def keys() -> set[str]:
        rows = await services.db.fetch_all("SELECT key FROM idempotency_keys")
        return {row["key"] for row in rows}

    async def stale_gone() -> bool:
        return "stale" not in await keys()

    await until(stale_gone, within=20)
    assert await keys() == {"fresh"}
