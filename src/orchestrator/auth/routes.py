"""POST /auth/login."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response

from orchestrator.auth.deps import services_of
from orchestrator.auth.users import MAX_PASSWORD, MAX_USERNAME, verify_credentials
from orchestrator.errors import Unauthorized
from orchestrator.representation import canonical_json

router = APIRouter(tags=["auth"])


class LoginRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    username: Annotated[str, Field(min_length=1, max_length=MAX_USERNAME)]
    password: Annotated[str, Field(min_length=1, max_length=MAX_PASSWORD)]


class TokenResponse(BaseModel):
    access_token: str
    token_type: str = "bearer"


async def login(body: LoginRequest, request: Request) -> Response:
    # The lengths are already checked by `LoginRequest`: nothing too long reaches argon2.
    services = services_of(request)
    await services.rate_limits.check_login(request.scope, username=body.username)
    user = await verify_credentials(
        services.db, services.passwords, username=body.username, password=body.password
    )
    if user is None:
        request.state.login_failed = True
        raise Unauthorized("Invalid username or password")
    token = services.tokens.issue(user.username)
    return Response(
        canonical_json({"access_token": token, "token_type": "bearer"}),
        media_type="application/json",
        headers={"Cache-Control": "no-store", "Pragma": "no-cache"},
    )


for _path in ("/auth/login", "/api/v1/auth/login"):
    router.add_api_route(
        _path,
        login,
        methods=["POST"],
        response_model=TokenResponse,
        responses={
            401: {"description": "Wrong username or password"},
            429: {"description": "Too many attempts for this username or client"},
        },
        summary="Exchange a username and password for an access token",
    )
