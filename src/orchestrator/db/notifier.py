"""The database's notifier: `notify` inside a transaction, delivered to listeners at commit.

Both backends deliver a committed notification to this process's own listeners at once
(`LocalChannels`); PostgreSQL also sends it to every other process with `NOTIFY`, which their
`LISTEN` connection hands to their listeners. A notification is only a wake-up: what it
announces is read from the database, so a lost one delays, never loses, anything.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from typing import Protocol

import structlog

log = structlog.get_logger(__name__)

# Called with a notification's payload, or with None when notifications may have been missed
# (a LISTEN connection that was lost or has just been made): read everything again.
Notified = Callable[[str | None], None]


class Listening(Protocol):
    """A listener's subscription to one channel."""

    async def keep_alive(self) -> None:
        """Make sure notifications still arrive (reconnecting if they cannot); never raises."""

    async def close(self) -> None: ...


class LocalChannels:
    """This process's listeners, by channel."""

    def __init__(self) -> None:
        self._listeners: dict[str, list[Notified]] = {}

    def add(self, channel: str, callback: Notified) -> None:
        self._listeners.setdefault(channel, []).append(callback)

    def remove(self, channel: str, callback: Notified) -> None:
        with contextlib.suppress(KeyError, ValueError):
            self._listeners[channel].remove(callback)

    def deliver(self, notes: Iterable[tuple[str, str]]) -> None:
        """Hand committed (channel, payload) notifications to their listeners."""
        for channel, payload in notes:
            for callback in tuple(self._listeners.get(channel, ())):
                try:
                    callback(payload)
                except Exception:
                    log.exception("notification_listener_error", channel=channel)


class LocalListening:
    """A subscription that only this process's commits can reach (SQLite's, and the local
    half of PostgreSQL's)."""

    def __init__(self, channels: LocalChannels, channel: str, callback: Notified) -> None:
        self._channels = channels
        self._channel = channel
        self._callback = callback
        channels.add(channel, callback)

    async def keep_alive(self) -> None:
        return None

    async def close(self) -> None:
        self._channels.remove(self._channel, self._callback)
