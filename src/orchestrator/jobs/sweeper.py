"""The sweeper: every process periodically returns jobs whose lease expired."""

from __future__ import annotations

from collections.abc import Callable

import structlog

from orchestrator.db import Database
from orchestrator.db.periodic import Periodic
from orchestrator.jobs.leases import sweep_expired_leases

log = structlog.get_logger(__name__)


def lease_sweeper(
    db: Database, *, interval: float, on_expired: Callable[[int], object] | None = None
) -> Periodic:
    """Every `interval` seconds, return the jobs whose lease expired to `pending` (and tell
    `on_expired` how many)."""

    async def sweep() -> None:
        swept = await sweep_expired_leases(db=db)
        if swept:
            log.info("expired_leases_swept", jobs=swept)
            if on_expired is not None:
                on_expired(swept)

    return Periodic(sweep, name="lease_sweep", interval=interval)
