"""POST/GET /api/v1/api-keys and DELETE /api/v1/api-keys/{id}: a user's keys (admins: anyone's)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Query, Request
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field
from starlette.responses import Response

from orchestrator.auth.api_keys import (
    DEFAULT_DAYS,
    MAX_DAYS,
    MAX_NAME,
    MIN_DAYS,
    api_key_body,
    create_api_key,
    list_api_keys,
    revoke_api_key,
)
from orchestrator.auth.deps import CurrentUser, Principal
from orchestrator.auth.users import MAX_USERNAME, USERNAME_PATTERN, get_user
from orchestrator.errors import Forbidden, NotFound
from orchestrator.http.lists import refuse_unknown
from orchestrator.http.routing import Routes
from orchestrator.representation import canonical_json
from orchestrator.services import services_of
from orchestrator.text import TITLE_PATTERN, storable

router = Routes(tags=["api-keys"])

API_KEYS = "/api/v1/api-keys"
_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
_PRIVATE = {"Cache-Control": "private, no-store"}


def _whole_number(value: Any) -> Any:
    # JSON (and its schema's "integer") does not tell 90 from 90.0; strict mode would.
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


class ApiKeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    name: Annotated[
        str,
        Field(
            min_length=1,
            max_length=MAX_NAME,
            json_schema_extra={"pattern": TITLE_PATTERN},
            description="What the key is for (a worker's, an agent's name)",
        ),
        AfterValidator(storable),
    ]
    expires_in_days: Annotated[
        int,
        Field(ge=MIN_DAYS, le=MAX_DAYS, description="No key lives forever"),
        BeforeValidator(_whole_number),
    ] = DEFAULT_DAYS
    read_only: bool = Field(default=False, description="Only GET and HEAD (and the feeds)")
    username: Annotated[
        str | None,
        Field(
            min_length=1,
            max_length=MAX_USERNAME,
            pattern=USERNAME_PATTERN,
            description="Admins: make the key for this user (default: yourself)",
        ),
    ] = None


class ApiKeyOut(BaseModel):
    id: str
    name: str
    username: str
    read_only: bool
    created_at: str
    expires_at: str
    last_used_at: str | None = Field(description="To the minute")
    prefix: str = Field(description="The key's first characters, to recognise it")


class NewApiKey(ApiKeyOut):
    key: str = Field(description="The secret: shown in this answer only")


class ApiKeyList(BaseModel):
    api_keys: list[ApiKeyOut]


Username = Annotated[
    str | None,
    Query(
        min_length=1,
        max_length=MAX_USERNAME,
        description="admins: one user's keys (default: everyone's)",
    ),
]


async def _owner(request: Request, caller: Principal, username: str | None) -> tuple[str, str]:
    """(id, username) of the user a key is made or listed for: the caller, or (admins) another."""
    if username is None or username.casefold() == caller.username.casefold():
        return caller.id, caller.username
    if caller.role != "admin":
        raise Forbidden("Only admins may manage another user's API keys")
    user = await get_user(services_of(request).db, username=username)
    if user is None:
        raise NotFound(f"No user {username!r}")
    return user.id, user.username


@router.post(
    API_KEYS,
    status_code=201,
    response_model=NewApiKey,
    responses={
        403: {"description": "A key for another user (admins only), or a read-only key"},
        404: {"description": "No such user"},
    },
    summary="Make an API key (its secret is shown once, in this answer)",
)
async def post_api_key(body: ApiKeyCreate, request: Request, user: CurrentUser) -> Response:
    user_id, username = await _owner(request, user, body.username)
    key, secret = await create_api_key(
        services_of(request).db,
        user_id=user_id,
        username=username,
        name=body.name,
        read_only=body.read_only,
        expires_in_days=body.expires_in_days,
    )
    return Response(
        canonical_json({**api_key_body(key), "key": secret}),
        status_code=201,
        media_type="application/json",
        headers={**_NO_STORE, "Location": f"{API_KEYS}/{key.id}"},
    )


@router.get(
    API_KEYS,
    response_model=ApiKeyList,
    responses={
        403: {"description": "Another user's keys (admins only)"},
        404: {"description": "No such user"},
    },
    summary="Your API keys (admins: everyone's, or one user's); never their secrets",
)
async def get_api_keys(request: Request, user: CurrentUser, username: Username = None) -> Response:
    refuse_unknown(request.query_params, frozenset({"username"}))
    services = services_of(request)
    if username is None and user.role == "admin":
        owner: str | None = None
    else:
        owner, _ = await _owner(request, user, username)
    await services.api_keys.settle()  # this process's last uses, written before they are read
    keys = await list_api_keys(services.db, user_id=owner)
    body = {"api_keys": [api_key_body(k) for k in keys]}
    return Response(canonical_json(body), media_type="application/json", headers=_PRIVATE)


@router.delete(
    f"{API_KEYS}/{{key_id:id}}",
    status_code=204,
    response_class=Response,
    responses={404: {"description": "No such API key (or another user's)"}},
    summary="Revoke an API key: every process refuses it within two seconds",
)
async def delete_api_key(key_id: str, request: Request, user: CurrentUser) -> Response:
    services = services_of(request)
    # Someone else's key is none of the caller's business: 404 as for no key at all.
    await revoke_api_key(
        services.db, key_id=key_id, user_id=None if user.role == "admin" else user.id
    )
    services.api_keys.forget()
    return Response(status_code=204)
