"""Retention: the change log keeps a window of history, and idempotency keys their 24 hours;
older rows are pruned in the background, with whatever the domains keep for a while."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta

import structlog

from orchestrator.db.changelog import prune_changes
from orchestrator.db.database import Database
from orchestrator.db.idempotency import prune_idempotency_keys
from orchestrator.db.periodic import Periodic

log = structlog.get_logger(__name__)


def retention_pruner(
    db: Database,
    *,
    keep: timedelta,
    every_seconds: float,
    chores: Sequence[Callable[[], Awaitable[None]]] = (),
) -> Periodic:
    """Prune at start and then every `every_seconds`, then run the domains' own `chores`
    (finished jobs); safe to run in every process at once."""

    async def prune() -> None:
        pruned = await prune_changes(db, older_than=keep)
        if pruned:
            log.info("change_log_pruned", rows=pruned)
        # Expired keys are already ignored; this only keeps the table from growing.
        forgotten = await prune_idempotency_keys(db)
        if forgotten:
            log.info("idempotency_keys_pruned", rows=forgotten)
        for chore in chores:
            await chore()

    return Periodic(prune, name="change_log_prune", interval=every_seconds, at_start=True)
