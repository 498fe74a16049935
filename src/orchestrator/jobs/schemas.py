"""What clients may send to create a job."""

from __future__ import annotations

import math
from typing import Annotated, Any

import orjson
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

from orchestrator.representation import canonical_json
from orchestrator.text import Description, Title, check_storable_json, storable

MAX_PAYLOAD_BYTES = 64 * 1024
INT32 = 2**31 - 1

Queue = Annotated[str, Field(min_length=1, max_length=100), AfterValidator(storable)]


def _finite_numbers(value: Any) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("numbers must be finite")
    if isinstance(value, dict):
        for item in value.values():
            _finite_numbers(item)
    elif isinstance(value, list):
        for item in value:
            _finite_numbers(item)


def _payload(value: dict[str, Any]) -> dict[str, Any]:
    check_storable_json(value)
    _finite_numbers(value)
    try:
        size = len(canonical_json(value))
    except orjson.JSONEncodeError:
        raise ValueError("is not representable as JSON (integers are limited to 64 bits)") from None
    if size > MAX_PAYLOAD_BYTES:
        raise ValueError(f"must be at most {MAX_PAYLOAD_BYTES} bytes as JSON")
    return value


Payload = Annotated[dict[str, Any], AfterValidator(_payload)]


def whole_number(value: Any) -> Any:
    # JSON (and its schema's "integer") does not tell 4 from 4.0; strict mode would.
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


class JobCreate(BaseModel):
    """The contract's `title` and `description`, plus how a worker should run the job."""

    model_config = ConfigDict(extra="forbid", strict=True)

    title: Title
    description: Description | None = None
    queue: Queue = "default"
    payload: Payload | None = None
    priority: Annotated[int, Field(ge=-INT32, le=INT32), BeforeValidator(whole_number)] = 0
    max_attempts: Annotated[int, Field(ge=1, le=100), BeforeValidator(whole_number)] = 3
