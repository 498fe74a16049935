"""GET /api/v1/users/me (any role) and GET /api/v1/users (admins)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from orchestrator.auth.deps import Admin, Reader
from orchestrator.auth.users import list_users, user_body
from orchestrator.errors import Unauthorized
from orchestrator.http.lists import refuse_unknown
from orchestrator.representation import canonical_json
from orchestrator.services import services_of

router = APIRouter(prefix="/api/v1/users", tags=["users"])

_PRIVATE = {"Cache-Control": "private, no-cache"}


@router.get("/me", summary="The user the token belongs to")
async def me(user: Reader, request: Request) -> Response:
    # From the per-process directory the token check has just filled: no database round trip.
    account = await services_of(request).users.get(user.username)
    if account is None:
        raise Unauthorized("Invalid token")
    return Response(
        canonical_json(user_body(account)), media_type="application/json", headers=_PRIVATE
    )


@router.get("", summary="Every user (admins only)")
async def users(_admin: Admin, request: Request) -> Response:
    refuse_unknown(request.query_params, frozenset())
    accounts = await list_users(services_of(request).db)
    return Response(
        canonical_json({"users": [user_body(a) for a in accounts]}),
        media_type="application/json",
        headers=_PRIVATE,
    )
