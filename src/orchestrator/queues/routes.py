"""Queues over HTTP: each queue's counts and settings; admins pause, resume and cap them."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Path, Request
from pydantic import BaseModel, Field
from starlette.responses import Response

from orchestrator.auth.deps import Admin, Reader
from orchestrator.errors import NotFound, Unprocessable
from orchestrator.http.responses import conditional_get, data_response
from orchestrator.http.routing import Routes
from orchestrator.queues.queries import STATUSES, get_queue, list_queues, update_queue
from orchestrator.queues.schemas import QueuePatch
from orchestrator.representation import canonical_json, etag_for
from orchestrator.services import services_of
from orchestrator.text import storable

router = Routes(tags=["queues"])

QUEUES = "/api/v1/queues"
# Queue names may hold any character a job's `queue` may, `/` included.
ONE = f"{QUEUES}/{{name:path}}"
QueueName = Annotated[str, Path(min_length=1, max_length=100, description="The queue's name")]
_NOT_FOUND = "The queue has neither jobs nor settings"
_CONDITIONAL: dict[int | str, dict[str, Any]] = {
    304: {"description": "Not modified (If-None-Match matched)"},
    412: {"description": "If-Match did not match"},
}


# Every status a job can have, each a count (a new status is counted as soon as jobs have it).
_COUNTS: dict[str, Any] = {
    "properties": {status: {"type": "integer", "minimum": 0} for status in STATUSES},
    "required": list(STATUSES),
    "additionalProperties": False,
}


class QueueAnswer(BaseModel):
    name: str
    paused: bool = Field(description="true: the queue hands out no claims")
    max_running: int | None = Field(description="The cap on its running jobs; null: none")
    counts: dict[str, int] = Field(description="Its jobs by status", json_schema_extra=_COUNTS)
    scheduled: int = Field(description="Pending jobs that wait for a later time (run_at)")
    oldest_pending_at: str | None = Field(
        description="When its longest-waiting due job became due; null: none is due"
    )


class QueuesAnswer(BaseModel):
    items: list[QueueAnswer]


def _storable(name: str) -> bool:
    try:
        storable(name)
    except ValueError:
        return False
    return True


@router.get(
    QUEUES,
    response_model=None,
    responses={200: {"model": QueuesAnswer}, **_CONDITIONAL},
    summary="List queues",
)
async def get_queues(request: Request, user: Reader) -> Response:
    """Every queue that has jobs or settings, by name, with its counts by status."""
    data = canonical_json({"items": await list_queues(services_of(request).db)})
    etag = etag_for(data)
    return conditional_get(request, etag) or data_response(data, etag)


@router.get(
    ONE,
    response_model=None,
    responses={200: {"model": QueueAnswer}, **_CONDITIONAL, 404: {"description": _NOT_FOUND}},
    summary="Read a queue",
)
async def get_one_queue(name: QueueName, request: Request, user: Reader) -> Response:
    queue = await get_queue(services_of(request).db, name=name) if _storable(name) else None
    if queue is None:
        raise NotFound(_NOT_FOUND)
    return conditional_get(request, queue.etag) or data_response(queue.body, queue.etag)


@router.patch(
    ONE,
    response_model=None,
    responses={
        200: {"model": QueueAnswer},
        403: {"description": "Only admins change queues"},
        422: {"description": "An unknown field, a max_running below 1, or a bad name"},
    },
    summary="Pause, resume or cap a queue (admins)",
)
async def patch_queue(name: QueueName, body: QueuePatch, request: Request, user: Admin) -> Response:
    """Fields left out stay as they are; a queue without settings gets them."""
    if not _storable(name):
        raise Unprocessable(
            details=[
                {"field": "name", "reason": "must not contain NUL characters or lone surrogates"}
            ]
        )
    queue = await update_queue(services_of(request).db, name=name, changes=body.changes())
    return data_response(queue.body, queue.etag)
