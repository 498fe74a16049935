"""Resource ids in paths: UUIDs, answered the same way everywhere when they are not."""

from __future__ import annotations

import re

from orchestrator.errors import NotFound

_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


def resource_id(raw: str, *, what: str) -> str:
    """The canonical (lower-case) form of a UUID path id; anything else names nothing: 404."""
    if len(raw) != 36 or _UUID.match(raw) is None:
        raise NotFound(f"No such {what}")
    return raw.lower()
