"""What clients were told, and the checks that the database kept every promise after a crash."""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import asyncpg
import httpx

TASKS = "/api/v1/collab/tasks"
Outcome = Literal["acknowledged", "refused", "unknown"]


@dataclass
class Write:
    """One create: its idempotency key, the marker that finds it, and what the client was told."""

    key: str
    marker: str
    valid: bool
    outcome: Outcome = "unknown"
    resource_id: str | None = None


@dataclass
class History:
    writes: list[Write] = field(default_factory=list)

    def attempt(self, client: httpx.Client, *, valid: bool) -> Write:
        """Send one create and record the answer; a dropped connection is an unknown outcome."""
        write = Write(key=uuid.uuid4().hex, marker=f"crash-{uuid.uuid4().hex}", valid=valid)
        self.writes.append(write)
        self.send(client, write)
        return write

    def send(self, client: httpx.Client, write: Write) -> None:
        body = {"title": write.marker if write.valid else "", "description": write.marker}
        try:
            response = client.post(TASKS, json=body, headers={"Idempotency-Key": write.key})
        except httpx.TransportError:
            return  # the process died under us: we were told nothing
        if response.status_code in (200, 201):
            write.outcome = "acknowledged"
            write.resource_id = response.json()["id"]
        elif 400 <= response.status_code < 500:
            write.outcome = "refused"
        else:
            raise AssertionError(f"unexpected answer {response.status_code}: {response.text}")

    def retry_unknown(self, client: httpx.Client) -> None:
        """Retry every write whose outcome we never learned, with its own Idempotency-Key."""
        for write in self.writes:
            if write.outcome == "unknown":
                self.send(client, write)


@dataclass(frozen=True)
class Stored:
    tasks_by_marker: dict[str, list[str]]
    revisions: list[int]
    counter: int
    integrity: str


def read_stored(backend: str, url: str) -> Stored:
    """Everything the checks need, read straight from the database."""
    if backend == "postgres":
        return asyncio.run(_read_pg(url))
    return _read_sqlite(Path(url.split(":///", 1)[1]))


def _group(rows: list[Any]) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = {}
    for row in rows:
        grouped.setdefault(row[1], []).append(row[0])
    return grouped


def _read_sqlite(path: Path) -> Stored:
    conn = sqlite3.connect(path)
    try:
        integrity = conn.execute("PRAGMA integrity_check").fetchone()[0]
        tasks = conn.execute("SELECT id, description FROM tasks").fetchall()
        revisions = [r[0] for r in conn.execute("SELECT revision FROM changes ORDER BY 1")]
        counter = conn.execute("SELECT revision FROM revision_counter WHERE id = 1").fetchone()[0]
    finally:
        conn.close()
    return Stored(_group(tasks), revisions, int(counter), str(integrity))


async def _read_pg(url: str) -> Stored:
    conn = await asyncpg.connect(url)
    try:
        tasks = await conn.fetch("SELECT id, description FROM tasks")
        revisions = [r[0] for r in await conn.fetch("SELECT revision FROM changes ORDER BY 1")]
        counter = await conn.fetchval("SELECT revision FROM revision_counter WHERE id = 1")
    finally:
        await conn.close()
    return Stored(_group([(r["id"], r["description"]) for r in tasks]), revisions, counter, "ok")


def check(history: History, stored: Stored, *, settled: bool) -> None:
    """The promises. `settled`: every unknown write has since been retried to an answer."""
    assert stored.integrity == "ok", stored.integrity
    for write in history.writes:
        found = stored.tasks_by_marker.get(write.marker, [])
        if write.outcome == "acknowledged":
            assert found == [write.resource_id], (write, found)
        elif write.outcome == "refused" or not write.valid:
            assert found == [], (write, found)
        else:
            assert len(found) <= 1, (write, found)
        if settled and write.valid:
            assert write.outcome == "acknowledged", write
    # A subscriber resumes from the log by revision: a hole, or a counter ahead of the log,
    # would be a change it could never receive.
    if stored.revisions:
        first = stored.revisions[0]
        assert stored.revisions == list(range(first, first + len(stored.revisions)))
        assert stored.counter == stored.revisions[-1]
