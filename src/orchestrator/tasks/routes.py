"""Collaboration tasks over HTTP: create, list, read, and edits guarded by `If-Match`."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from starlette.responses import Response

from orchestrator.auth.deps import Reader, Writer
from orchestrator.db.changelog import collection_revision
from orchestrator.db.idempotency import IdempotentRequest
from orchestrator.db.keyset import Position
from orchestrator.errors import NotFound, PreconditionFailed
from orchestrator.http.etag import if_match_version
from orchestrator.http.idempotency import create_response
from orchestrator.http.lists import PageRequest, page_request, serve_list
from orchestrator.http.responses import conditional_get, data_response
from orchestrator.http.routing import Routes
from orchestrator.services import services_of
from orchestrator.tasks.queries import (
    StoredTask,
    create_task,
    delete_task,
    get_task,
    list_tasks,
    update_task,
)
from orchestrator.tasks.schemas import TaskCreate, TaskPatch

router = Routes(tags=["tasks"])

TASKS = "/api/v1/collab/tasks"
TASK_LIST = "/api/v1/collab/state/tasks"
_CONDITIONAL: dict[int | str, dict[str, Any]] = {
    304: {"description": "Not modified (If-None-Match matched)"},
    412: {"description": "If-Match did not match"},
}
_GUARDED: dict[int | str, dict[str, Any]] = {
    404: {"description": "No such task"},
    412: {"description": "If-Match is stale; the current ETag is in the response"},
    428: {"description": "If-Match is required"},
}


def _location(task_id: str) -> str:
    return f"{TASKS}/{task_id}"


def _stale(current: StoredTask) -> PreconditionFailed:
    return PreconditionFailed(
        "The task has changed; fetch it again", headers={"ETag": current.etag}
    )


@router.post(TASKS, status_code=201, response_model=None, summary="Create a task")
async def post_task(body: TaskCreate, request: Request, user: Writer) -> Response:
    db = services_of(request).db

    async def create(idempotency: IdempotentRequest | None) -> StoredTask:
        return await create_task(
            db,
            title=body.title,
            description=body.description,
            created_by=user.username,
            idempotency=idempotency,
        )

    return await create_response(
        request,
        db,
        user_id=user.id,
        path=TASKS,
        payload=body.model_dump(),
        create=create,
        location=_location,
    )


@router.get(TASK_LIST, response_model=None, responses=_CONDITIONAL, summary="List tasks")
async def get_task_list(request: Request, user: Reader) -> Response:
    page = page_request(request.query_params)
    services = services_of(request)
    db = services.db

    async def read(page: PageRequest) -> tuple[list[dict[str, Any]], Position | None]:
        return await list_tasks(db, after=page.after, limit=page.limit)

    return await serve_list(
        request,
        cache=services.list_cache,
        revision=await collection_revision(db, "tasks"),
        key="tasks",
        page=page,
        read=read,
        envelope=lambda items: {"kind": "tasks", "items": items},
    )


@router.get(
    f"{TASKS}/{{task_id:id}}",
    response_model=None,
    responses={**_CONDITIONAL, 404: {"description": "No such task"}},
    summary="Read a task",
)
async def get_one_task(task_id: str, request: Request, user: Reader) -> Response:
    task = await get_task(services_of(request).db, task_id=task_id)
    if task is None:
        raise NotFound("No such task")
    return conditional_get(request, task.etag) or data_response(task.body, task.etag)


@router.patch(
    f"{TASKS}/{{task_id:id}}",
    response_model=None,
    responses=_GUARDED,
    summary="Edit a task's title and/or description (If-Match required)",
)
async def patch_task(task_id: str, body: TaskPatch, request: Request, user: Writer) -> Response:
    db = services_of(request).db
    current = await get_task(db, task_id=task_id)
    if current is None:
        raise NotFound("No such task")
    star, tags = if_match_version(request.headers.get("if-match"))
    if not star and current.etag not in tags:
        raise _stale(current)
    updated = await update_task(
        db,
        task_id=task_id,
        expected_version=None if star else current.version,
        changes=body.changes(),
    )
    if updated is None:  # changed or deleted between our read and the guarded write
        latest = await get_task(db, task_id=task_id)
        if latest is None:
            raise NotFound("No such task")
        raise _stale(latest)
    return data_response(updated.body, updated.etag)


@router.delete(
    f"{TASKS}/{{task_id:id}}",
    status_code=204,
    response_model=None,
    responses=_GUARDED,
    summary="Delete a task (If-Match required)",
)
async def delete_one_task(task_id: str, request: Request, user: Writer) -> Response:
    db = services_of(request).db
    current = await get_task(db, task_id=task_id)
    if current is None:
        raise NotFound("No such task")
    star, tags = if_match_version(request.headers.get("if-match"))
    if not star and current.etag not in tags:
        raise _stale(current)
    if not await delete_task(
        db, task_id=task_id, expected_version=None if star else current.version
    ):
        latest = await get_task(db, task_id=task_id)
        if latest is None:
            raise NotFound("No such task")
        raise _stale(latest)
    return Response(status_code=204)
