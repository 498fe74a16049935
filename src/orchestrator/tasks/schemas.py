"""What clients may send to create or edit a task."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, WithJsonSchema, model_validator

from orchestrator.text import MAX_TITLE, TITLE_PATTERN, Description, Title


class TaskCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    title: Title
    description: Description | None = None


class TaskPatch(BaseModel):
    """Title and/or description; an explicit `null` description clears it."""

    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra={"minProperties": 1})

    # Optional but never null: say so in the schema, not only in the validator below.
    title: Annotated[
        Title | None,
        WithJsonSchema(
            {"type": "string", "minLength": 1, "maxLength": MAX_TITLE, "pattern": TITLE_PATTERN}
        ),
    ] = None
    description: Description | None = None

    @model_validator(mode="after")
    def _changes_something(self) -> TaskPatch:
        if not self.model_fields_set:
            raise ValueError("send title and/or description")
        if "title" in self.model_fields_set and self.title is None:
            raise ValueError("title cannot be null")
        return self

    def changes(self) -> dict[str, str | None]:
        return {
            name: getattr(self, name)
            for name in ("title", "description")
            if name in self.model_fields_set
        }
