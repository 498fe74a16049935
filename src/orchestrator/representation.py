"""Canonical JSON and strong ETags: the one way a resource becomes the bytes we store, send
and hash."""

from __future__ import annotations

import hashlib
from typing import Any

import orjson


def canonical_json(value: Any) -> bytes:
    """Sorted keys, compact, UTF-8: the exact bytes we send and hash."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def etag_for(body: bytes) -> str:
    """The strong ETag of a body: its SHA-256, quoted."""
    return f'"{hashlib.sha256(body).hexdigest()}"'
