"""A task as stored and as shown."""

from __future__ import annotations

from typing import Any

from orchestrator.db import Row
from orchestrator.timestamps import iso_text

TASK_COLUMNS = "id, title, description, version, created_by, created_at, updated_at"


def task_body(row: Row) -> dict[str, Any]:
    """The contract's task (`id`, `title`, `description`, `version`, `created_at`) and more."""
    return {
        "id": row["id"],
        "title": row["title"],
        "description": row["description"],
        "version": int(row["version"]),
        "created_by": row["created_by"],
        "created_at": iso_text(row["created_at"]),
        "updated_at": iso_text(row["updated_at"]),
    }
