"""Signing in and out: POST /auth/login, /auth/refresh, /auth/logout and /auth/session."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.responses import Response

from orchestrator.auth import opaque
from orchestrator.auth.cookies import (
    SESSION_COOKIE,
    STATE_KEY,
    clearing_cookies,
    cookie_value,
    origin_allowed,
)
from orchestrator.auth.deps import (
    authenticate,
    authenticate_cookie,
    bearer_token,
    check_csrf,
    cookie_headers,
    lifetimes_of,
    secure_cookies,
)
from orchestrator.auth.sessions import (
    Grant,
    Kind,
    TokenReused,
    access_issuer,
    find_token,
    no_access,
    revoke_session,
    rotate,
    start_session,
)
from orchestrator.auth.throttle import POLICY, AccountThrottled, charge, forget
from orchestrator.auth.users import (
    MAX_PASSWORD,
    MAX_USERNAME,
    User,
    username_key,
    verify_credentials,
)
from orchestrator.errors import Forbidden, Unauthorized
from orchestrator.http.rate_limit import unlimited
from orchestrator.representation import canonical_json
from orchestrator.services import services_of

router = APIRouter(tags=["auth"])

# Far longer than any token we issue, far shorter than anything that could cost us.
MAX_REFRESH_TOKEN = 512
_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


class LoginRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    username: Annotated[str, Field(min_length=1, max_length=MAX_USERNAME)]
    password: Annotated[str, Field(min_length=1, max_length=MAX_PASSWORD)]


class TokenResponse(BaseModel):
    access_token: str
    token_type: str = "bearer"
    expires_in: int = Field(description="seconds until the access token expires")
    refresh_token: str = Field(description="exchange it at POST /auth/refresh (once)")
    refresh_expires_in: int = Field(description="seconds until the refresh token expires unused")


class RefreshRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    refresh_token: Annotated[str, Field(min_length=1, max_length=MAX_REFRESH_TOKEN)]


class LogoutRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    refresh_token: Annotated[str | None, Field(max_length=MAX_REFRESH_TOKEN)] = None


async def _sign_in(request: Request, body: LoginRequest, kind: Kind) -> Grant:
    # The lengths are already checked by `LoginRequest`: nothing too long reaches argon2.
    services = services_of(request)
    limits = services.rate_limits
    await limits.check_login(request.scope, username=body.username)
    address = limits.client_address.of(request.scope)
    account = username_key(body.username)
    addresses = services.address_failures
    # A place for the hash first: a full pool refuses at once, before any count or query.
    place = services.passwords.admit(addresses.penalty(address))
    addresses.started(address)
    user: User | None = None
    try:
        if limits.enabled:
            try:
                await charge(
                    services.db, account=account, policy=services.account_policy, now=time.time()
                )
            except AccountThrottled:
                services.metrics.rate_limited.labels(POLICY).inc()
                raise
        user = await verify_credentials(
            services.db,
            services.passwords,
            username=body.username,
            password=body.password,
            place=place,
        )
    finally:
        place.release()
        addresses.ended(address, failed=user is None)
    if user is None:
        request.state.login_failed = True
        raise Unauthorized("Invalid username or password")
    if limits.enabled:
        await forget(services.db, account=account)
    return await start_session(
        services.db,
        user=user,
        kind=kind,
        lifetimes=lifetimes_of(services.settings),
        issue_access=access_issuer(services.tokens) if kind == "token" else no_access,
        user_agent=request.headers.get("user-agent"),
        client_address=address,
    )


def _token_response(grant: Grant) -> Response:
    assert grant.access is not None
    now = datetime.now(UTC)
    body = {
        "access_token": grant.access.token,
        "token_type": "bearer",
        "expires_in": max(0, grant.access.exp - int(now.timestamp())),
        "refresh_token": grant.refresh_token,
        "refresh_expires_in": max(0, int((grant.refresh_expires_at - now).total_seconds())),
    }
    return Response(canonical_json(body), media_type="application/json", headers=_NO_STORE)


@unlimited  # counted by the login policies instead
async def login(body: LoginRequest, request: Request) -> Response:
    return _token_response(await _sign_in(request, body, "token"))


_TOKEN_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "Wrong username or password"},
    429: {"description": "Too many attempts for this account or client; see Retry-After"},
    503: {"description": "Too many sign-ins at once; see Retry-After"},
}

for _path in ("/auth/login", "/api/v1/auth/login"):
    router.add_api_route(
        _path,
        login,
        methods=["POST"],
        response_model=TokenResponse,
        responses=_TOKEN_ERRORS,
        summary="Exchange a username and password for an access token and a refresh token",
    )


@router.post(
    "/auth/refresh",
    response_model=TokenResponse,
    responses={401: {"description": "Invalid, expired, revoked or reused refresh token"}},
    summary="Exchange a refresh token (once) for a new access token and refresh token",
)
async def refresh(body: RefreshRequest, request: Request) -> Response:
    services = services_of(request)
    if not opaque.is_refresh_token(body.refresh_token):
        raise Unauthorized("Invalid refresh token")
    tokens = services.tokens
    try:
        grant = await rotate(
            services.db,
            token=body.refresh_token,
            kind="token",
            lifetimes=lifetimes_of(services.settings),
            issue_access=access_issuer(tokens),
            successor_key=services.session_keys.successor,
            reissue=lambda record: tokens.reissue(
                record.username,
                sid=record.session_id,
                jti=record.access_jti or "",
                iat_us=record.access_iat_us or 0,
                exp=record.access_exp or 0,
            ),
        )
    except TokenReused as exc:
        services.sessions.mark_revoked(exc.session_id)
        raise
    return _token_response(grant)


async def _read_login_form(request: Request) -> LoginRequest:
    """The login fields from a JSON body or an HTML form post."""
    body = await request.body()
    content_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    try:
        if content_type == "application/x-www-form-urlencoded":
            try:
                fields = dict(parse_qsl(body.decode(), keep_blank_values=True, max_num_fields=8))
            except (UnicodeDecodeError, ValueError):
                fields = {}
            return LoginRequest.model_validate(fields)
        return LoginRequest.model_validate_json(body or b"{}")
    except ValidationError as exc:
        raise RequestValidationError(
            [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_input=False)]
        ) from None


_LOGIN_SCHEMA = {"$ref": "#/components/schemas/LoginRequest"}


@router.post(
    "/auth/session",
    status_code=204,
    response_class=Response,
    responses={
        204: {
            "description": "Signed in: sets the HttpOnly session cookie `orch_session` and "
            "the readable `orch_csrf` cookie",
        },
        403: {"description": "The request came from a page of another origin"},
        **_TOKEN_ERRORS,
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": _LOGIN_SCHEMA},
                "application/x-www-form-urlencoded": {"schema": _LOGIN_SCHEMA},
            },
        }
    },
    summary="Sign a browser in: a session cookie instead of a token",
)
@unlimited  # counted by the login policies instead
async def browser_session(request: Request) -> Response:
    services = services_of(request)
    # A form post can come from any site's page: sign-in CSRF would sign the victim into the
    # attacker's account. Pages send `Origin`; it must be ours (or a configured one).
    if request.headers.get("origin") is not None and not origin_allowed(
        request.scope, services.settings.cors_origins
    ):
        raise Forbidden("Sign-in from a page of another origin")
    grant = await _sign_in(request, await _read_login_form(request), "browser")
    response = Response(status_code=204, headers=_NO_STORE)
    response.raw_headers.extend(cookie_headers(request, services.authenticator, grant))
    return response


@router.post(
    "/auth/logout",
    status_code=204,
    response_class=Response,
    responses={
        204: {"description": "The session is over; a browser's cookies are cleared"},
        401: {
            "description": "Missing, invalid, expired or revoked access token or session cookie "
            "(a cookie's answer still clears both cookies)"
        },
        403: {"description": "Missing X-CSRF-Token (cookie), or an API key (it has no session)"},
    },
    summary="End the session of the access token or browser cookie (and of a refresh token)",
    openapi_extra={"security": [{"bearerAuth": []}, {"cookieAuth": []}]},
)
async def logout(request: Request, body: LogoutRequest | None = None) -> Response:
    services = services_of(request)
    response = Response(status_code=204, headers=_NO_STORE)
    authorization = request.headers.get("authorization")
    if authorization is not None:
        principal = await authenticate(services.authenticator, bearer_token(authorization))
        if principal.api_key_id is not None:
            raise Forbidden(
                "An API key has no session: revoke it with DELETE /api/v1/api-keys/{id}"
            )
    else:
        cookie = cookie_value(request.scope, SESSION_COOKIE)
        if cookie is None:
            raise Unauthorized()
        clearing = clearing_cookies(secure=secure_cookies(request, services.authenticator))
        try:
            principal, _ = await authenticate_cookie(
                services.authenticator, cookie, rotate_if_due=False
            )
        except Unauthorized:
            # Over already, or never ours: refused, but the browser still drops the cookies.
            request.scope.setdefault("state", {})[STATE_KEY] = clearing
            raise
        check_csrf(request, principal, services.authenticator)
        response.raw_headers.extend(clearing)
    request.state.user = principal.username
    ending = {principal.session_id} if principal.session_id else set()
    if body is not None and body.refresh_token is not None:
        record = (
            await find_token(services.db, body.refresh_token)
            if opaque.is_refresh_token(body.refresh_token)
            else None
        )
        if record is not None and record.user_id == principal.id:
            ending.add(record.session_id)
    for session_id in ending:
        await revoke_session(services.db, session_id=session_id, user_id=principal.id)
        services.sessions.mark_revoked(session_id)
    return response
