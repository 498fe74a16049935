"""A schedule as stored and as shown: the columns we read and the JSON body built from them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from orchestrator.db import Row
from orchestrator.representation import canonical_json, etag_for
from orchestrator.timestamps import iso_text

SCHEDULE_COLUMNS = (
    "id, name, cron, timezone, job, enabled, next_run_at, last_fired_at, last_job_id, "
    "created_by, version, created_at, updated_at"
)


def _ts(value: Any) -> str | None:
    return iso_text(value) if value is not None else None


def schedule_body(row: Row) -> dict[str, Any]:
    """The schedule as clients see it."""
    return {
        "id": row["id"],
        "name": row["name"],
        "cron": row["cron"],
        "timezone": row["timezone"],
        "job": orjson.Fragment(row["job"]),  # stored canonical: spliced in as it is
        "enabled": bool(row["enabled"]),
        # The next fire time; null while disabled.
        "next_run_at": _ts(row["next_run_at"]),
        "last_fired_at": _ts(row["last_fired_at"]),
        "last_job_id": row["last_job_id"],
        "created_by": row["created_by"],
        "version": int(row["version"]),
        "created_at": _ts(row["created_at"]),
        "updated_at": _ts(row["updated_at"]),
    }


@dataclass(frozen=True, slots=True)
class StoredSchedule:
    """A schedule's representation: its canonical body, the ETag of those bytes, the guards."""

    id: str
    version: int
    created_by: str
    cron: str
    timezone: str
    enabled: bool
    body: bytes
    etag: str


def stored_schedule(row: Row) -> StoredSchedule:
    """The schedule of a row, serialised once: the bytes the change log keeps and the client
    gets."""
    body = canonical_json(schedule_body(row))
    return StoredSchedule(
        id=row["id"],
        version=int(row["version"]),
        created_by=row["created_by"],
        cron=row["cron"],
        timezone=row["timezone"],
        enabled=bool(row["enabled"]),
        body=body,
        etag=etag_for(body),
    )
