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


def check_storable_json(value: Any, *, depth: int = 0) -> None:
    """Every string (keys too) of a JSON value is storable; nesting is bounded."""
    if depth > 64:
        raise ValueError("is nested too deeply")
    if isinstance(value, str):
        storable(value)
    elif isinstance(value, dict):
        for key, item in value.items():
            storable(key)
            check_storable_json(item, depth=depth + 1)
    elif isinstance(value, list):
        for item in value:
            check_storable_json(item, depth=depth + 1)


Title = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_TITLE),
    AfterValidator(storable),
]
Description = Annotated[str, Field(max_length=MAX_DESCRIPTION), AfterValidator(storable)]
