"""Cron schedules over HTTP: create, list, read, and edits and deletes guarded by `If-Match`."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from starlette.responses import Response

from orchestrator.auth.deps import Principal, Reader, Writer
from orchestrator.db.changelog import collection_revision
from orchestrator.db.keyset import Position
from orchestrator.errors import Forbidden, NotFound, PreconditionFailed, Unprocessable
from orchestrator.http.etag import if_match_version
from orchestrator.http.lists import PageRequest, page_request, serve_list
from orchestrator.http.responses import conditional_get, data_response
from orchestrator.http.routing import Routes
from orchestrator.schedules.cron import CronSchedule, InvalidSchedule, parse_schedule
from orchestrator.schedules.queries import (
    ScheduleSpec,
    create_schedule,
    delete_schedule,
    get_schedule,
    list_schedules,
    update_schedule,
)
from orchestrator.schedules.records import StoredSchedule
from orchestrator.schedules.schemas import ScheduleCreate, SchedulePatch
from orchestrator.services import services_of
from orchestrator.timestamps import utcnow

router = Routes(tags=["schedules"])

SCHEDULES = "/api/v1/schedules"
ONE = f"{SCHEDULES}/{{schedule_id:id}}"
_CONDITIONAL: dict[int | str, dict[str, Any]] = {
    304: {"description": "Not modified (If-None-Match matched)"},
    412: {"description": "If-Match did not match"},
}
_INVALID = "A cron that never fires, an unknown time zone, or another bad field"
_GUARDED: dict[int | str, dict[str, Any]] = {
    403: {"description": "Only the schedule's creator or an admin may change it"},
    404: {"description": "No such schedule"},
    412: {"description": "If-Match is stale; the current ETag is in the response"},
    422: {"description": _INVALID},
    428: {"description": "If-Match is required"},
}


def _location(schedule_id: str) -> str:
    return f"{SCHEDULES}/{schedule_id}"


def _stale(current: StoredSchedule) -> PreconditionFailed:
    return PreconditionFailed(
        "The schedule has changed; fetch it again", headers={"ETag": current.etag}
    )


def _parse(cron: str, timezone: str) -> CronSchedule:
    try:
        return parse_schedule(cron, timezone, now=utcnow())
    except InvalidSchedule as exc:
        raise Unprocessable(
            f"Invalid {exc.field}", details=[{"field": exc.field, "reason": exc.reason}]
        ) from None


@router.post(
    SCHEDULES,
    status_code=201,
    response_model=None,
    responses={422: {"description": _INVALID}},
    summary="Create a cron schedule",
)
async def post_schedule(body: ScheduleCreate, request: Request, user: Writer) -> Response:
    """Each fire time of `cron` in `timezone` creates one job from `job`."""
    spec = ScheduleSpec(
        name=body.name,
        cron=_parse(body.cron, body.timezone),
        timezone=body.timezone,
        job=body.job.model_dump(exclude_none=True),
        enabled=body.enabled,
    )
    schedule = await create_schedule(services_of(request).db, spec=spec, created_by=user.username)
    return data_response(
        schedule.body, schedule.etag, status=201, headers={"Location": _location(schedule.id)}
    )


@router.get(SCHEDULES, response_model=None, responses=_CONDITIONAL, summary="List schedules")
async def get_schedule_list(request: Request, user: Reader) -> Response:
    page = page_request(request.query_params)
    services = services_of(request)
    db = services.db

    async def read(page: PageRequest) -> tuple[list[dict[str, Any]], Position | None]:
        return await list_schedules(db, after=page.after, limit=page.limit)

    return await serve_list(
        request,
        cache=services.list_cache,
        revision=await collection_revision(db, "schedules"),
        key=("schedules",),
        page=page,
        read=read,
        envelope=lambda items: {"schedules": items},
    )


@router.get(
    ONE,
    response_model=None,
    responses={**_CONDITIONAL, 404: {"description": "No such schedule"}},
    summary="Read a schedule",
)
async def get_one_schedule(schedule_id: str, request: Request, user: Reader) -> Response:
    schedule = await get_schedule(services_of(request).db, schedule_id=schedule_id)
    if schedule is None:
        raise NotFound("No such schedule")
    return conditional_get(request, schedule.etag) or data_response(schedule.body, schedule.etag)


async def _guarded(
    request: Request, user: Principal, schedule_id: str
) -> tuple[StoredSchedule, bool]:
    """The schedule, and whether `If-Match` was `*`; 404, 403, 428 or 412 otherwise."""
    current = await get_schedule(services_of(request).db, schedule_id=schedule_id)
    if current is None:
        raise NotFound("No such schedule")
    if user.role != "admin" and current.created_by != user.username:
        raise Forbidden("Only the schedule's creator or an admin may change it")
    star, tags = if_match_version(request.headers.get("if-match"))
    if not star and current.etag not in tags:
        raise _stale(current)
    return current, star


async def _refused(request: Request, schedule_id: str) -> PreconditionFailed | NotFound:
    """Why a guarded write matched nothing: the schedule is gone, or changed."""
    latest = await get_schedule(services_of(request).db, schedule_id=schedule_id)
    return NotFound("No such schedule") if latest is None else _stale(latest)


@router.patch(
    ONE,
    response_model=None,
    responses=_GUARDED,
    summary="Edit a schedule (creator or admin; If-Match required)",
)
async def patch_schedule(
    schedule_id: str, body: SchedulePatch, request: Request, user: Writer
) -> Response:
    """A new `cron`, `timezone` or `enabled` computes `next_run_at` anew from now."""
    db = services_of(request).db
    current, star = await _guarded(request, user, schedule_id)
    changes = body.changes()
    timing = None
    if {"cron", "timezone", "enabled"} & changes.keys():
        timing = _parse(
            changes.get("cron", current.cron), changes.get("timezone", current.timezone)
        )
        changes.setdefault("enabled", current.enabled)
    updated = await update_schedule(
        db,
        schedule_id=schedule_id,
        # A new fire time is computed from the cron read above: only onto that same version.
        expected_version=None if star and timing is None else current.version,
        changes=changes,
        timing=timing,
    )
    if updated is None:
        raise await _refused(request, schedule_id)
    return data_response(updated.body, updated.etag)


@router.delete(
    ONE,
    status_code=204,
    response_model=None,
    responses=_GUARDED,
    summary="Delete a schedule (creator or admin; If-Match required)",
)
async def delete_one_schedule(schedule_id: str, request: Request, user: Writer) -> Response:
    db = services_of(request).db
    current, star = await _guarded(request, user, schedule_id)
    if not await delete_schedule(
        db, schedule_id=schedule_id, expected_version=None if star else current.version
    ):
        raise await _refused(request, schedule_id)
    return Response(status_code=204)
