"""Keyset pages: lists ordered by (`created_at`, `id`), each page starting after a position."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class Position:
    """Where a page ends: the last item's sort key (`created_at`, `id`)."""

    created_at: datetime
    id: str
