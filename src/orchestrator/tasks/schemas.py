"""What clients may send to create or edit a task."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, model_validator

from orchestrator.http.text import Description, Title


class TaskCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    title: Title
    description: Description | None = None


class TaskPatch(BaseModel):
    """Title and/or description; an explicit `null` description clears it."""

    model_config = ConfigDict(extra="forbid", strict=True)

    title: Title | None = None
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
