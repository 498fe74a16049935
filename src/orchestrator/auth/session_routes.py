"""GET /api/v1/sessions (the caller's, or a user's for admins) and DELETE /api/v1/sessions/{id}."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query, Request
from starlette.responses import Response

from orchestrator.auth.deps import CurrentUser, Principal, lifetimes_of
from orchestrator.auth.sessions import list_sessions, revoke_session, session_body, session_owner
from orchestrator.auth.users import MAX_USERNAME, get_user
from orchestrator.errors import Forbidden, NotFound
from orchestrator.http.routing import Routes
from orchestrator.representation import canonical_json
from orchestrator.services import services_of

router = Routes(tags=["sessions"])

_PRIVATE = {"Cache-Control": "private, no-store"}
Username = Annotated[
    str | None,
    Query(
        min_length=1,
        max_length=MAX_USERNAME,
        description="admins: another user's sessions (default: your own)",
    ),
]


async def _subject(request: Request, caller: Principal, username: str | None) -> str:
    """The id of the user whose sessions are asked for: the caller's, or (admins) another's."""
    if username is None or username.casefold() == caller.username.casefold():
        return caller.id
    if caller.role != "admin":
        raise Forbidden("Only admins may see or end another user's sessions")
    user = await get_user(services_of(request).db, username=username)
    if user is None:
        raise NotFound(f"No user {username!r}")
    return user.id


@router.get(
    "/api/v1/sessions",
    responses={
        403: {"description": "Another user's sessions (admins only)"},
        404: {"description": "No such user (`username`)"},
    },
    summary="Your live sessions (admins: any user's)",
)
async def sessions(request: Request, user: CurrentUser, username: Username = None) -> Response:
    services = services_of(request)
    found = await list_sessions(
        services.db,
        user_id=await _subject(request, user, username),
        idle=lifetimes_of(services.settings).idle,
    )
    body = {"sessions": [session_body(s, current=user.session_id) for s in found]}
    return Response(canonical_json(body), media_type="application/json", headers=_PRIVATE)


@router.delete(
    "/api/v1/sessions/{session_id:id}",
    status_code=204,
    response_class=Response,
    summary="End one session: its refresh tokens and access tokens stop working everywhere",
)
async def end_session(
    session_id: str, request: Request, user: CurrentUser, username: Username = None
) -> Response:
    services = services_of(request)
    owner = await session_owner(services.db, session_id=session_id)
    subject = await _subject(request, user, username) if username is not None else user.id
    if owner != subject and user.role != "admin":
        raise NotFound("No such session")  # someone else's session is none of the caller's
    if username is not None and owner != subject:
        raise NotFound("No such session")
    if not await revoke_session(services.db, session_id=session_id):
        raise NotFound("No such session")
    services.sessions.mark_revoked(session_id)
    return Response(status_code=204)
