"""The per-process change feed: follows the log and hands every change, in order, to listeners.

A notification from the database's notifier (a local commit, or another process's through
PostgreSQL) wakes the feed; the feed then reads the log from the last revision it delivered.
A lost wake-up therefore delays a change, never drops it, and the periodic poll is the safety
net (and the only cross-process path on SQLite).

A commit of this process comes with its changes (`Committed`): those the feed hands on
without reading the log, when they follow on from the last revision it delivered. Anything
else (another process's commit in between, a notification without changes, the poll) sends
it to the log, which is always complete.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import structlog

from orchestrator.background import cancel_and_wait
from orchestrator.db.changelog import (
    NOTIFY_CHANNEL,
    Change,
    Committed,
    changes_after,
    latest_revision,
)
from orchestrator.db.database import Database, DatabaseUnavailable
from orchestrator.db.notifier import Listening

log = structlog.get_logger(__name__)

Listener = Callable[[Change], None]
LOG_PAGE = 1000
# Local changes kept for a feed that has fallen behind; past this the log has them anyway.
MAX_LOCAL = 10_000


class ChangeFeed:
    def __init__(self, db: Database, *, poll_seconds: float) -> None:
        self.db = db
        self.poll_seconds = poll_seconds
        self.delivered = 0
        self._listeners: list[Listener] = []
        self._wake = asyncio.Event()
        self._advanced = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None
        self.listening: Listening | None = None
        self._stopping = False
        self._outage = False
        self.latest_seen = 0  # the newest revision this process has heard of
        self._local: list[Change] = []  # this process's commits, not delivered yet
        self._read_log = True  # whether something may be in the log that `_local` lacks

    @property
    def lag(self) -> int:
        """Revisions known to be committed that this process has not delivered yet."""
        return max(0, self.latest_seen - self.delivered)

    def add_listener(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        with contextlib.suppress(ValueError):
            self._listeners.remove(listener)

    def wake(self) -> None:
        """Something committed: read the log soon."""
        self._wake.set()

    async def start(self) -> None:
        self.delivered = self.latest_seen = await latest_revision(self.db)
        self.listening = await self.db.listen(NOTIFY_CHANNEL, self._notified)
        self._task = asyncio.create_task(self._run(), name="change-feed")

    async def stop(self) -> None:
        self._stopping = True
        await cancel_and_wait(self._task)
        self._task = None
        if self.listening is not None:
            await self.listening.close()
            self.listening = None

    async def wait_past(self, revision: int, within: float) -> bool:
        """Wait until this process has delivered `revision`; False on timeout."""
        async with self._advanced:
            try:
                await asyncio.wait_for(
                    self._advanced.wait_for(lambda: self.delivered >= revision), within
                )
            except TimeoutError:
                return False
        return True

    async def _run(self) -> None:
        while not self._stopping:
            if self.listening is not None:
                await self.listening.keep_alive()
            try:
                await asyncio.wait_for(self._wake.wait(), self.poll_seconds)
            except TimeoutError:
                self._read_log = True  # the poll: commits we were not told of
            self._wake.clear()
            if self._stopping:
                return
            try:
                await self._drain()
            except DatabaseUnavailable as exc:
                self._unavailable("change_feed_database_unavailable", exc)
            except Exception:
                log.exception("change_feed_error")
            else:
                self._available()

    async def _drain(self) -> None:
        while True:
            batch = self._local_batch()
            if not batch:
                if not self._read_log and not self._local:
                    return
                batch = await changes_after(self.db, revision=self.delivered, limit=LOG_PAGE)
                self._read_log = len(batch) >= LOG_PAGE  # a full page: more may follow
                if not batch:
                    return
            for change in batch:
                for listener in tuple(self._listeners):
                    try:
                        listener(change)
                    except Exception:
                        log.exception("change_listener_error")
                self.delivered = change.revision
            self.latest_seen = max(self.latest_seen, self.delivered)
            async with self._advanced:
                self._advanced.notify_all()

    def _local_batch(self) -> list[Change]:
        """This process's changes that follow on from `delivered` without a gap, taken from
        `_local` (dropping those already delivered); empty when there are none."""
        local = self._local
        if not local:
            return []
        local.sort(key=_revision)  # commits are notified in order on SQLite, maybe not on PG
        delivered = self.delivered
        start = 0
        while start < len(local) and local[start].revision <= delivered:
            start += 1
        end = start
        while end < len(local) and local[end].revision == delivered + 1 + end - start:
            end += 1
        batch = local[start:end]
        del local[:end]
        return batch

    def _unavailable(self, event: str, exc: BaseException) -> None:
        """Say once per outage that the database is away (the poll retries every interval)."""
        if not self._outage:
            self._outage = True
            log.warning(event, error=type(exc).__name__)

    def _available(self) -> None:
        if self._outage:
            self._outage = False
            log.info("change_feed_database_recovered")

    def _notified(self, payload: str | None) -> None:
        if payload is not None and payload.isdigit():
            self.latest_seen = max(self.latest_seen, int(payload))
        if isinstance(payload, Committed) and len(self._local) < MAX_LOCAL:
            self._local.extend(payload.changes)
        else:
            self._read_log = True
        self.wake()


def _revision(change: Change) -> int:
    return change.revision
