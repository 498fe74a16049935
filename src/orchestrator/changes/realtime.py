"""Wiring of the real-time parts into the app: the hub and the retention task."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

from orchestrator.changes.hub import Hub, cancel_and_wait
from orchestrator.changes.retention import prune_forever
from orchestrator.services import Services

_HUB = "change_hub"


def hub_of(services: Services) -> Hub:
    hub = services.extras[_HUB]
    assert isinstance(hub, Hub)
    return hub


def drain(services: Services) -> None:
    """Shutdown has begun: end the live streams (WebSockets get 1012 from the server)."""
    hub = services.extras.get(_HUB)
    if isinstance(hub, Hub):
        hub.drain()


@asynccontextmanager
async def realtime(services: Services) -> AsyncIterator[Hub]:
    """Run the hub and the log's retention while the app serves."""
    settings = services.settings
    hub = Hub(db=services.db, feed=services.feed, metrics=services.metrics)
    services.extras[_HUB] = hub
    hub.start()
    services.metrics.feed_lag.set_function(lambda: services.feed.lag)
    pruner = asyncio.create_task(
        prune_forever(
            services.db,
            keep=timedelta(hours=settings.change_retention_hours),
            every_seconds=settings.change_prune_interval_seconds,
        ),
        name="change-log-retention",
    )
    try:
        yield hub
    finally:
        await cancel_and_wait(pruner)
        hub.stop()
