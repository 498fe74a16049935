"""How many jobs a claim may take from each queue: none from a paused queue, and no more than
its `max_running` less the jobs of it running now.

Decided inside the claim's own transaction. On SQLite that transaction holds the write lock,
so no other claim runs meanwhile. On PostgreSQL a claim of a capped queue first locks the
queue's settings row, then counts its running jobs in a later statement (whose snapshot sees
every claim that held the lock before it), so claims of one capped queue follow one another
however many processes make them. A claim that finds a capped queue full without the lock
takes none (a job that stops running wakes it), and queues without a cap take no lock at all.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from orchestrator.db import Row, Transaction


@dataclass(frozen=True, slots=True)
class Rooms:
    """Per queue of a claim, in its order: how many jobs it may take (at most the claim's
    own number); `held` are the queues that give nothing now (paused, or at their cap)."""

    open: dict[str, int]
    held: tuple[str, ...]


def _names(prefix: str, queues: Sequence[str]) -> tuple[str, dict[str, str]]:
    params = {f"{prefix}{n}": queue for n, queue in enumerate(queues)}
    return ", ".join(":" + name for name in params), params


async def _settings(tx: Transaction, queues: Sequence[str], *, lock: bool) -> dict[str, Row]:
    """Each queue's settings, and the running jobs of each capped one. Locked, the rows are
    taken in name order, so that claims of several capped queues cannot deadlock; the count
    is then read by the next statement, whose snapshot sees what the lock waited for."""
    names, params = _names("s", queues)
    if lock:
        await tx.fetch_all(
            f"SELECT name FROM queue_settings WHERE name IN ({names}) ORDER BY name FOR UPDATE",
            params,
        )
    rows = await tx.fetch_all(
        "SELECT name, paused, max_running, CASE WHEN max_running IS NOT NULL AND NOT paused "
        "THEN (SELECT count(*) FROM jobs WHERE queue = s.name AND status = 'running') END "
        f"AS running FROM queue_settings AS s WHERE name IN ({names})",
        params,
    )
    return {row["name"]: row for row in rows}


def _room(row: Row | None, want: int) -> int:
    if row is None:
        return want
    if row["paused"]:
        return 0
    if row["max_running"] is None:
        return want
    return min(want, max(0, int(row["max_running"]) - int(row["running"])))


async def claim_rooms(tx: Transaction, *, queues: Sequence[str], want: int) -> Rooms:
    """What a claim of up to `want` jobs of `queues` may take from each, in `tx`."""
    settings = await _settings(tx, queues, lock=False)
    if tx.dialect == "postgresql":
        # Read without a lock, a queue at its cap is held back as it is (a job that stops
        # running wakes the claims it held back); one with room is read again, locked.
        capped = sorted(
            name
            for name, row in settings.items()
            if not row["paused"] and row["max_running"] is not None and _room(row, want) > 0
        )
        if capped:
            settings.update(await _settings(tx, capped, lock=True))
    rooms = {queue: _room(settings.get(queue), want) for queue in queues}
    return Rooms(
        open={queue: room for queue, room in rooms.items() if room > 0},
        held=tuple(queue for queue, room in rooms.items() if room == 0),
    )
