"""What clients may send to create or edit a schedule."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    model_validator,
)

from orchestrator.jobs.schemas import INT32, Payload, Queue, whole_number
from orchestrator.text import Description, Title, storable

Name = Annotated[str, Field(min_length=1, max_length=200), AfterValidator(storable)]
Cron = Annotated[str, Field(min_length=1, max_length=200), AfterValidator(storable)]
Zone = Annotated[str, Field(min_length=1, max_length=64), AfterValidator(storable)]


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

    name: Name | None = None
    cron: Cron | None = None
    timezone: Zone | None = None
    job: ScheduledJob | None = None
    enabled: bool | None = None

    @model_validator(mode="after")
    def _no_nulls(self) -> SchedulePatch:
        nulls = sorted(name for name in self.model_fields_set if getattr(self, name) is None)
        if nulls:
            raise ValueError(f"{', '.join(nulls)} cannot be null")
        return self

    def changes(self) -> dict[str, Any]:
        return self.model_dump(exclude_unset=True)
