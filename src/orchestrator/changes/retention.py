"""Retention: the change log keeps a window of history, and idempotency keys their 24 hours;
older rows are pruned in the background."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import structlog

from orchestrator.db import Database, DatabaseUnavailable
from orchestrator.db.changelog import prune_changes
from orchestrator.db.idempotency import prune_idempotency_keys

log = structlog.get_logger(__name__)


async def prune_forever(db: Database, *, keep: timedelta, every_seconds: float) -> None:
    """Prune now and then every `every_seconds`; safe to run in every process at once."""
    while True:
        try:
            pruned = await prune_changes(db, older_than=keep)
            if pruned:
                log.info("change_log_pruned", rows=pruned)
            # Expired keys are already ignored; this only keeps the table from growing.
            forgotten = await prune_idempotency_keys(db)
            if forgotten:
                log.info("idempotency_keys_pruned", rows=forgotten)
        except DatabaseUnavailable:
            log.warning("change_log_prune_database_unavailable")
        except Exception:
            log.exception("change_log_prune_failed")
        await asyncio.sleep(every_seconds)
