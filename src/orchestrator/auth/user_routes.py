"""Accounts over HTTP: who am I, every user and their management (admins), my password."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Path, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response

from orchestrator.auth.deps import Admin, CurrentUser, Reader
from orchestrator.auth.sessions import change_own_password
from orchestrator.auth.users import (
    MAX_PASSWORD,
    MAX_USERNAME,
    MIN_PASSWORD,
    USERNAME_PATTERN,
    Role,
    check_new_credentials,
    check_new_password,
    create_user,
    end_all_sessions,
    get_user,
    list_users,
    update_user,
    user_body,
)
from orchestrator.errors import Conflict, Forbidden, Unauthorized, Unprocessable
from orchestrator.http.lists import refuse_unknown
from orchestrator.http.routing import Routes
from orchestrator.representation import canonical_json
from orchestrator.services import Services, services_of

router = Routes(tags=["users"])

USERS = "/api/v1/users"
_PRIVATE = {"Cache-Control": "private, no-cache"}

# The rules are checked by `check_new_credentials`, with the CLI's messages; the schema says
# the same, so that a client knows them before it asks.
_NEW_PASSWORD: dict[str, Any] = {"minLength": MIN_PASSWORD, "maxLength": MAX_PASSWORD}


class UserOut(BaseModel):
    id: str
    username: str
    role: Role
    disabled: bool
    created_at: str


class UserCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    username: str = Field(
        json_schema_extra={"minLength": 1, "maxLength": MAX_USERNAME, "pattern": USERNAME_PATTERN},
        description="Unique regardless of case",
    )
    role: Role = "member"
    password: str = Field(json_schema_extra=_NEW_PASSWORD)


class UserPatch(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    role: Role | None = Field(default=None, description="Effective on the user's next request")
    disabled: bool | None = Field(
        default=None, description="Disabling (or enabling) ends every token and session so far"
    )


class PasswordChange(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    current_password: Annotated[str, Field(min_length=1, max_length=MAX_PASSWORD)]
    new_password: str = Field(json_schema_extra=_NEW_PASSWORD)


Username = Annotated[str, Path(min_length=1, max_length=MAX_USERNAME)]


def _user_response(body: dict[str, object], status: int = 200) -> Response:
    return Response(
        canonical_json(body), status_code=status, media_type="application/json", headers=_PRIVATE
    )


def _heard_here(services: Services) -> None:
    """This process follows its own account change at once (the change log tells the others)."""
    services.users.forget()
    services.sessions.forget_browsers()


@router.get(f"{USERS}/me", summary="The user the token belongs to")
async def me(user: Reader, request: Request) -> Response:
    # From the per-process directory the token check has just filled: no database round trip.
    account = await services_of(request).users.get(user.username)
    if account is None:
        raise Unauthorized("Invalid token")
    return _user_response(user_body(account))


@router.get(USERS, summary="Every user (admins only)")
async def users(_admin: Admin, request: Request) -> Response:
    refuse_unknown(request.query_params, frozenset())
    accounts = await list_users(services_of(request).db)
    return _user_response({"users": [user_body(a) for a in accounts]})


@router.post(
    USERS,
    status_code=201,
    response_model=UserOut,
    responses={409: {"description": "A user of that name exists (regardless of case)"}},
    summary="Create a user (admins only), as `orchestrator users create` does",
)
async def post_user(body: UserCreate, request: Request, _admin: Admin) -> Response:
    check_new_credentials(username=body.username, password=body.password, role=body.role)
    services = services_of(request)
    created = await create_user(
        services.db,
        username=body.username,
        password_hash=await services.passwords.hash(body.password),
        role=body.role,
    )
    return _user_response(user_body(created), 201)


@router.patch(
    f"{USERS}/{{username}}",
    response_model=UserOut,
    responses={
        404: {"description": "No such user"},
        409: {"description": "An admin may not disable or demote themselves"},
    },
    summary="Change a user's role or disable them (admins only); disabling ends their sessions",
)
async def patch_user(
    username: Username, body: UserPatch, request: Request, admin: Admin
) -> Response:
    demoted = body.role is not None and body.role != "admin"
    if username.casefold() == admin.username.casefold() and (body.disabled or demoted):
        # Another admin can; this one would lock themselves out (perhaps the last admin).
        raise Conflict("You may not disable yourself or give up your own admin role")
    services = services_of(request)
    updated = await update_user(
        services.db, username=username, role=body.role, disabled=body.disabled
    )
    _heard_here(services)
    return _user_response(user_body(updated))


@router.delete(
    f"{USERS}/{{username}}/sessions",
    status_code=204,
    response_class=Response,
    responses={404: {"description": "No such user"}},
    summary="End every session and access token of a user (admins only); API keys stay",
)
async def delete_user_sessions(username: Username, request: Request, _admin: Admin) -> Response:
    services = services_of(request)
    await end_all_sessions(services.db, username=username)
    _heard_here(services)
    return Response(status_code=204)


@router.post(
    f"{USERS}/me/password",
    status_code=204,
    response_class=Response,
    responses={403: {"description": "Wrong current password, or a read-only API key"}},
    summary="Change your password; your other sessions end",
)
async def post_password(body: PasswordChange, request: Request, user: CurrentUser) -> Response:
    try:
        check_new_password(body.new_password)
    except Unprocessable as exc:
        raise Unprocessable(
            exc.message, details=[{**d, "field": "new_password"} for d in exc.details]
        ) from None
    services = services_of(request)
    account = await get_user(services.db, username=user.username)
    if account is None or account.disabled:
        raise Unauthorized("Invalid token")
    if not await services.passwords.verify(account.password_hash, body.current_password):
        raise Forbidden("Wrong current password")
    ended = await change_own_password(
        services.db,
        user_id=account.id,
        password_hash=await services.passwords.hash(body.new_password),
        keep=user.session_id,
    )
    for session_id in ended:
        services.sessions.mark_revoked(session_id)
    _heard_here(services)
    return Response(status_code=204)
