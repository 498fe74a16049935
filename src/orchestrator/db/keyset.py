"""Keyset pages: lists ordered by (`created_at`, `id`), each page starting after a position."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from orchestrator.db.database import Database, Row
from orchestrator.timestamps import as_utc


@dataclass(frozen=True, slots=True)
class Position:
    """Where a page ends: the last item's sort key (`created_at`, `id`)."""

    created_at: datetime
    id: str


async def keyset_page(
    db: Database,
    *,
    select: str,
    conditions: Sequence[str] = (),
    params: Mapping[str, Any] | None = None,
    after: Position | None,
    limit: int | None,
    newest_first: bool = False,
    body: Callable[[Row], dict[str, Any]],
) -> tuple[list[dict[str, Any]], Position | None]:
    """One page of `select` (`SELECT … FROM table`, without WHERE) in (`created_at`, `id`)
    order (or its reverse) under `conditions`, after `after`; the bodies and where the next
    page starts (None on the last page). `limit` None reads everything."""
    where = list(conditions)
    values = dict(params or {})
    if after is not None:
        beyond = "<" if newest_first else ">"
        where.append(
            f"(created_at {beyond} :after_at OR (created_at = :after_at AND id {beyond} :after_id))"
        )
        values.update(after_at=after.created_at, after_id=after.id)
    direction = " DESC" if newest_first else ""
    sql = select + (f" WHERE {' AND '.join(where)}" if where else "")
    sql += f" ORDER BY created_at{direction}, id{direction}"
    if limit is not None:
        sql += " LIMIT :limit"
        values["limit"] = limit + 1  # one more tells whether there is a next page
    rows = await db.fetch_all(sql, values)
    more = limit is not None and len(rows) > limit
    if more:
        rows = rows[:limit]
    last = rows[-1] if more else None
    following = Position(as_utc(last["created_at"]), last["id"]) if last is not None else None
    return [body(row) for row in rows], following
