"""What an admin may send to change a queue's settings."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from orchestrator.jobs.schemas import INT32, whole_number


def _no_default(schema: dict[str, Any]) -> None:
    # Absent means unchanged: the schema shows no default.
    schema.pop("default", None)


MaxRunning = Annotated[int, Field(ge=1, le=INT32, strict=True), BeforeValidator(whole_number)]


class QueuePatch(BaseModel):
    """The settings to change; those left out stay as they are."""

    model_config = ConfigDict(extra="forbid", strict=True)

    paused: bool = Field(
        default=False,
        description="true: the queue hands out no claims (running jobs go on)",
        json_schema_extra=_no_default,
    )
    max_running: MaxRunning | None = Field(
        default=None,
        description="At most this many jobs of the queue running at once, across every "
        "process; null: no cap",
        json_schema_extra=_no_default,
    )

    def changes(self) -> dict[str, Any]:
        return self.model_dump(exclude_unset=True)
