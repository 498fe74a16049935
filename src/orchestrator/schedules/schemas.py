"""What clients may send to create or edit a schedule."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    model_validator,
)
from pydantic.config import JsonDict, JsonValue
from pydantic.json_schema import SkipJsonSchema

from orchestrator.jobs.schemas import INT32, Payload, Queue, whole_number
from orchestrator.schedules.cron import CRON_PATTERN, zone_names
from orchestrator.text import Description, Title, storable

# The schema's reading of the pattern: `$` is the end of the string, \d and the like ASCII.
_CRON = re.compile(CRON_PATTERN.removesuffix("$") + r"\Z", re.ASCII)


def _cron(value: str) -> str:
    if _CRON.match(value) is None:
        raise ValueError(
            "must be five fields (minute, hour, day of month, month, day of week) of *, "
            "numbers in range, names of months and days, ranges, steps and lists; six with "
            "a leading seconds field; or one of @hourly, @daily, @midnight, @weekly, "
            "@monthly, @yearly, @annually"
        )
    return value


def _zones(schema: JsonDict) -> None:
    # Read when the OpenAPI document is built, not at import: the host's zone database.
    schema["enum"] = list[JsonValue](sorted(zone_names()))


Name = Annotated[str, Field(min_length=1, max_length=200), AfterValidator(storable)]
Cron = Annotated[
    str,
    Field(max_length=200, json_schema_extra={"pattern": CRON_PATTERN}),
    AfterValidator(_cron),
]
Zone = Annotated[str, Field(json_schema_extra=_zones)]


class ScheduledJob(BaseModel):
    """The job each fire creates (as `POST /api/v1/jobs` takes it, without times or keys)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    title: Title
    description: Description | None = None
    queue: Queue = "default"
    payload: Payload | None = None
    priority: Annotated[int, Field(ge=-INT32, le=INT32), BeforeValidator(whole_number)] = 0
    max_attempts: Annotated[int, Field(ge=1, le=100), BeforeValidator(whole_number)] = 3


class ScheduleCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    name: Name
    cron: Cron = Field(
        description=(
            "Five fields (`*/5 * * * *`), six with a leading seconds field, or @hourly, "
            "@daily, @weekly, @monthly, @yearly"
        )
    )
    timezone: Zone = Field(default="UTC", description="An IANA time zone, such as Europe/Paris")
    job: ScheduledJob
    enabled: bool = True


class SchedulePatch(BaseModel):
    """The fields to change; a new cron, zone or enabling computes `next_run_at` anew."""

    model_config = ConfigDict(extra="forbid", strict=True)

    # Optional but never null: the schema says so too (SkipJsonSchema), not only the check.
    name: Name | SkipJsonSchema[None] = None
    cron: Cron | SkipJsonSchema[None] = None
    timezone: Zone | SkipJsonSchema[None] = None
    job: ScheduledJob | SkipJsonSchema[None] = None
    enabled: bool | SkipJsonSchema[None] = None

    @model_validator(mode="after")
    def _no_nulls(self) -> SchedulePatch:
        nulls = sorted(name for name in self.model_fields_set if getattr(self, name) is None)
        if nulls:
            raise ValueError(f"{', '.join(nulls)} cannot be null")
        return self

    def changes(self) -> dict[str, Any]:
        return self.model_dump(exclude_unset=True)
