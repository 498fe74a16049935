"""What clients may send to create a job."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Annotated, Any, Literal

import orjson
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from orchestrator.jobs.records import JobStatus
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

MAX_DELAY_SECONDS = 31_536_000  # a year
MAX_UNIQUE_KEY = 200


def rfc3339(value: str) -> str:
    """An RFC 3339 date-time with an explicit offset (`Z` or `±hh:mm`)."""
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError("must be an RFC 3339 date-time, such as 2026-01-14T10:00:00Z") from None
    if "t" not in value.lower() or moment.tzinfo is None:
        raise ValueError("must be an RFC 3339 date-time with an offset (Z or +01:00)")
    return value


# A string in the schema (strict mode would refuse the JSON string for a datetime field).
Instant = Annotated[
    str, Field(max_length=64, json_schema_extra={"format": "date-time"}), AfterValidator(rfc3339)
]
UniqueKey = Annotated[str, Field(min_length=1, max_length=MAX_UNIQUE_KEY), AfterValidator(storable)]
DelaySeconds = Annotated[float, Field(ge=0, le=MAX_DELAY_SECONDS, strict=True)]


# Not both times at once, as the schema says it: both present and neither null.
ONE_TIME: dict[str, Any] = {
    "not": {
        "required": ["run_at", "delay_seconds"],
        "properties": {"run_at": {"type": "string"}, "delay_seconds": {"type": "number"}},
    }
}


JobId = Annotated[str, Field(pattern=r"^[0-9a-fA-F-]{36}$")]
MAX_PARENTS = 100


def _distinct(ids: list[str]) -> list[str]:
    # Ids are stored in lower case; the first of repeated ids keeps its place.
    return list(dict.fromkeys(job_id.lower() for job_id in ids))


def whole_number(value: Any) -> Any:
    # JSON (and its schema's "integer") does not tell 4 from 4.0; strict mode would.
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


class JobCreate(BaseModel):
    """The contract's `title` and `description`, plus how a worker should run the job."""

    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra=ONE_TIME)

    title: Title
    description: Description | None = None
    queue: Queue = "default"
    payload: Payload | None = None
    priority: Annotated[int, Field(ge=-INT32, le=INT32), BeforeValidator(whole_number)] = 0
    max_attempts: Annotated[int, Field(ge=1, le=100), BeforeValidator(whole_number)] = 3
    run_at: Instant | None = Field(
        default=None, description="Not before this time (RFC 3339 with an offset)"
    )
    delay_seconds: DelaySeconds | None = Field(
        default=None, description="Not before this many seconds from now (not with `run_at`)"
    )
    unique_key: UniqueKey | None = Field(
        default=None,
        description=(
            "While a job of the queue with this key is waiting, pending or running, creating "
            "another answers 200 with that job and `Orchestrator-Duplicate-Of`"
        ),
    )
    depends_on: Annotated[list[JobId], AfterValidator(_distinct)] = Field(
        default_factory=list,
        max_length=MAX_PARENTS,
        description=(
            f"Up to {MAX_PARENTS} existing jobs (ids; a repeated id counts once): the job is "
            "`waiting` until every one of them has succeeded, then `pending`; it is cancelled "
            "if one of them fails for good, is cancelled or is deleted unfinished"
        ),
    )

    @model_validator(mode="after")
    def _one_time(self) -> JobCreate:
        if self.run_at is not None and self.delay_seconds is not None:
            raise ValueError("give run_at or delay_seconds, not both")
        return self


class RetryRequest(BaseModel):
    """When the retried job may run again (at once when neither is given)."""

    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra=ONE_TIME)

    run_at: Instant | None = None
    delay_seconds: DelaySeconds | None = None

    @model_validator(mode="after")
    def _one_time(self) -> RetryRequest:
        if self.run_at is not None and self.delay_seconds is not None:
            raise ValueError("give run_at or delay_seconds, not both")
        return self


BULK_LIMIT = 10_000


class BulkFilter(BaseModel):
    """Jobs matching every field given."""

    model_config = ConfigDict(extra="forbid", strict=True)

    status: JobStatus | None = None
    queue: Queue | None = None
    created_before: Instant | None = None


class BulkRequest(BaseModel):
    """One action on the jobs named by `ids` or matched by `filter` (exactly one of them)."""

    # Exactly one of them, as the schema says it: a null one counts as left out.
    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={
            "oneOf": [
                {"required": ["ids"], "properties": {"ids": {"type": "array"}}},
                {"required": ["filter"], "properties": {"filter": {"type": "object"}}},
            ]
        },
    )

    action: Literal["cancel", "retry", "delete"]
    ids: list[JobId] | None = Field(default=None, min_length=1, max_length=BULK_LIMIT)
    filter: BulkFilter | None = None
    limit: Annotated[int, Field(ge=1, le=BULK_LIMIT), BeforeValidator(whole_number)] = Field(
        default=BULK_LIMIT, description="At most this many jobs, oldest first"
    )

    @model_validator(mode="before")
    @classmethod
    def _no_unique_key(cls, data: Any) -> Any:
        if isinstance(data, dict) and "unique_key" in data:
            raise ValueError("unique_key belongs to creating one job; a bulk action takes none")
        return data

    @model_validator(mode="after")
    def _ids_or_filter(self) -> BulkRequest:
        if (self.ids is None) == (self.filter is None):
            raise ValueError("give either ids or filter (exactly one of them)")
        return self
