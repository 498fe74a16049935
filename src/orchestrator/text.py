"""Text that both backends store the same way (no NUL, no lone surrogates), and its fields."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import AfterValidator, Field, StringConstraints

MAX_TITLE = 200
MAX_DESCRIPTION = 10_000

_FORBIDDEN = re.compile("[\x00\ud800-\udfff]")


def storable(value: str) -> str:
    """`value`, or ValueError when a backend could not store it faithfully."""
    if _FORBIDDEN.search(value) is not None:
        raise ValueError("must not contain NUL characters or lone surrogates")
    return value


# Objects and arrays nest at most this deep in anything we accept or store (a body, a
# WebSocket message): deeper values cost recursion everywhere they are read and written.
MAX_JSON_DEPTH = 64


def json_depth_exceeds(value: Any, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether objects and arrays nest in `value` more than `limit` levels (no recursion)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def check_storable_json(value: Any, *, depth: int = 1) -> None:
    """Every string (keys too) of a JSON value is storable; nesting is bounded."""
    if depth > MAX_JSON_DEPTH and isinstance(value, dict | list):
        raise ValueError(f"is nested deeper than {MAX_JSON_DEPTH} levels")
    if isinstance(value, str):
        storable(value)
    elif isinstance(value, dict):
        for key, item in value.items():
            storable(key)
            check_storable_json(item, depth=depth + 1)
    elif isinstance(value, list):
        for item in value:
            check_storable_json(item, depth=depth + 1)


# The schema says what the stripping means: at least one character that is not whitespace,
# spelled out as the characters the stripping removes (Unicode's White_Space, as pydantic-core
# trims). `\S` would not do: JSON Schema reads it as ECMAScript does, whose whitespace differs
# (U+0085 is not in it, U+FEFF is), so a title of one U+0085 was valid to the schema and empty
# to us.
TITLE_PATTERN = r"[^\t\n\u000b\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]"
Title = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_TITLE),
    AfterValidator(storable),
    Field(json_schema_extra={"pattern": TITLE_PATTERN}),
]
Description = Annotated[str, Field(max_length=MAX_DESCRIPTION), AfterValidator(storable)]
