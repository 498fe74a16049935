"""The current-user and role dependencies that guard every protected route.

A request authenticates with a bearer credential (an access token or an API key) or, when it
has none, with the browser session cookie. None of them costs a database read per request:
users, API keys, revoked sessions and browser tokens are kept per process and follow the
change log.
"""

from __future__ import annotations

import hmac
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import Depends, Request
from starlette.datastructures import QueryParams
from starlette.requests import HTTPConnection
from starlette.types import Scope

from orchestrator.auth import opaque
from orchestrator.auth.api_keys import ApiKeyDirectory
from orchestrator.auth.cookies import (
    CSRF_COOKIE,
    CSRF_HEADER,
    SESSION_COOKIE,
    STATE_KEY,
    cookie_value,
    csrf_token,
    is_https,
    origin_allowed,
    session_cookies,
)
from orchestrator.auth.sessions import (
    Grant,
    Lifetimes,
    SessionDirectory,
    SessionKeys,
    TokenRecord,
    TokenReused,
    no_access,
    rotate,
)
from orchestrator.auth.tokens import TokenService, subprotocol_token
from orchestrator.auth.users import Role, UserDirectory
from orchestrator.config import Settings
from orchestrator.db import Database
from orchestrator.errors import Forbidden, Unauthorized

# Longer than any token we issue; a longer one is refused before any parsing.
MAX_CREDENTIAL = 4096
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
READ_ONLY_METHODS = frozenset({"GET", "HEAD"})


@dataclass(frozen=True, slots=True)
class Credential:
    """What the client presented: a bearer token or API key, or a browser-session cookie."""

    secret: str = field(repr=False)
    cookie: bool = False


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated user of a request, and what they authenticated with."""

    id: str
    username: str
    role: Role
    session_id: str | None = None
    api_key_id: str | None = None
    read_only: bool = False
    expires_at: float = math.inf  # when the credential stops working by itself
    issued_at: float = 0.0  # when its authority began (for revocations that cut off by time)
    credential: Credential | None = field(default=None, repr=False, compare=False)


def lifetimes_of(settings: Settings) -> Lifetimes:
    return Lifetimes(
        idle=timedelta(days=settings.refresh_idle_days),
        max_age=timedelta(days=settings.session_max_days),
        grace=timedelta(seconds=settings.refresh_reuse_grace_seconds),
    )


@dataclass(frozen=True, slots=True)
class Authenticator:
    """What authenticating a request reads. The app keeps one on its state
    (`app.state.authenticator`), so auth needs nothing of the app-level auth."""

    settings: Settings
    db: Database
    tokens: TokenService
    users: UserDirectory
    sessions: SessionDirectory
    api_keys: ApiKeyDirectory
    session_keys: SessionKeys
    trusts: Callable[[str], bool]  # whether a peer address is a trusted proxy


def authenticator_of(conn: HTTPConnection) -> Authenticator:
    authenticator: Authenticator = conn.app.state.authenticator
    return authenticator


def bearer_token(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def presented_token(scope: Scope) -> str | None:
    """The bearer credential a request presents: its `Authorization` header or, on a
    WebSocket (where a browser can set no header), a `bearer.` subprotocol or `?token=`."""
    authorization = None
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            authorization = value.decode("latin-1")
            break
    token = bearer_token(authorization)
    if token is not None or scope["type"] != "websocket":
        return token
    return subprotocol_token(scope.get("subprotocols", ())) or QueryParams(
        scope.get("query_string", b"")
    ).get("token")


def known_owner(auth: Authenticator, scope: Scope) -> str | None:
    """Who the request's credential names, known without I/O: for the rate limits, which
    count before routing. None without a credential or with one that does not verify."""
    token = presented_token(scope)
    if token is None or len(token) > MAX_CREDENTIAL:
        return None
    if opaque.looks_like_api_key(token):
        key = auth.api_keys.known(token)  # a key this process has seen: its user
        return key.username if key is not None else None
    try:
        return auth.tokens.verify(token).sub
    except Unauthorized:
        return None


async def authenticate(auth: Authenticator, token: str | None) -> Principal:
    """The user a bearer credential (access token or API key) speaks for, or `Unauthorized`."""
    if token is None:
        raise Unauthorized()
    if len(token) > MAX_CREDENTIAL:
        raise Unauthorized("Invalid token")
    if opaque.looks_like_api_key(token):
        return await _authenticate_key(auth, token)
    if opaque.is_refresh_token(token) or opaque.is_browser_token(token):
        raise Unauthorized("A refresh token is not an access token; exchange it at /auth/refresh")
    claims = auth.tokens.verify(token)
    user = await auth.users.get(claims.sub)
    if user is None or user.disabled:
        raise Unauthorized("Invalid token")
    if claims.iat < user.tokens_valid_after.timestamp():
        raise Unauthorized("Token revoked")
    if claims.sid is not None and auth.sessions.is_revoked(claims.sid):
        raise Unauthorized("Token revoked")
    return Principal(
        id=user.id,
        username=user.username,
        role=user.role,
        session_id=claims.sid,
        expires_at=claims.exp,
        issued_at=claims.iat,
        credential=Credential(token),
    )


async def _authenticate_key(auth: Authenticator, secret: str) -> Principal:
    key = await auth.api_keys.get(secret)
    if key is None:
        raise Unauthorized("Invalid API key")
    now = time.time()
    expires_at = key.expires_at.timestamp()
    if expires_at <= now:
        raise Unauthorized("API key expired")
    user = await auth.users.get(key.username)
    if user is None or user.disabled:
        raise Unauthorized("Invalid API key")
    auth.api_keys.used(key, now)
    return Principal(
        id=user.id,
        username=user.username,
        role=user.role,
        api_key_id=key.id,
        read_only=key.read_only,
        expires_at=expires_at,
        credential=Credential(secret),
    )


async def authenticate_cookie(
    auth: Authenticator, cookie: str, *, rotate_if_due: bool
) -> tuple[Principal, Grant | None]:
    """The user a browser-session cookie speaks for, and the rotated cookie if it was due."""
    if len(cookie) > MAX_CREDENTIAL or not opaque.is_browser_token(cookie):
        raise Unauthorized("Invalid session")
    record = await auth.sessions.browser_token(cookie)
    if record is None:
        raise Unauthorized("Invalid session")
    lifetimes = lifetimes_of(auth.settings)
    now = datetime.now(UTC)
    grant: Grant | None = None
    rotate_every = timedelta(minutes=auth.settings.session_cookie_rotate_minutes)
    due = now - record.created_at >= rotate_every
    if record.used_at is not None or (rotate_if_due and due):
        # Used up already (another tab, or a copy: the database decides), or time to rotate.
        grant = await _rotate_browser(auth, cookie, lifetimes)
        record = grant.record
    await _check_browser(auth, record, now)
    user = await auth.users.get(record.username)
    assert user is not None  # checked just above
    principal = Principal(
        id=user.id,
        username=user.username,
        role=user.role,
        session_id=record.session_id,
        expires_at=record.refresh_expires_at().timestamp(),
        issued_at=record.session_created_at.timestamp(),
        credential=Credential(grant.refresh_token if grant else cookie, cookie=True),
    )
    return principal, grant


async def _rotate_browser(auth: Authenticator, cookie: str, lifetimes: Lifetimes) -> Grant:
    sessions = auth.sessions
    try:
        grant = await rotate(
            auth.db,
            token=cookie,
            kind="browser",
            lifetimes=lifetimes,
            issue_access=no_access,
            successor_key=auth.session_keys.successor,
            reissue=lambda _record: None,
        )
    except TokenReused as exc:
        sessions.mark_revoked(exc.session_id)
        raise
    sessions.forget_browser(opaque.digest(cookie))
    sessions.remember_browser(grant.record)
    return grant


async def _check_browser(auth: Authenticator, record: TokenRecord, now: datetime) -> None:
    if auth.sessions.is_revoked(record.session_id):
        raise Unauthorized("Session revoked")
    user = await auth.users.get(record.username)
    if (
        user is None
        or user.disabled
        or record.session_created_at < user.tokens_valid_after
        or record.session_revoked_at is not None
    ):
        raise Unauthorized("Session revoked")
    if record.refresh_expires_at() <= now:
        raise Unauthorized("Session expired")


async def recheck(auth: Authenticator, principal: Principal, *, admin: bool = False) -> None:
    """`Unauthorized` if what a long-lived connection authenticated with no longer holds (and,
    with `admin`, if its user is no longer an admin).

    A cookie is not presented again: it may have been rotated by the browser's other requests
    since, and an old one presented again would count as a copy. Its session is checked.
    """
    if admin:
        account = await auth.users.get(principal.username)
        if account is None or account.role != "admin":
            raise Unauthorized("No longer an admin")
    credential = principal.credential
    if credential is None:
        return
    if not credential.cookie:
        await authenticate(auth, credential.secret)
        return
    user = await auth.users.get(principal.username)
    if user is None or user.disabled or principal.issued_at < user.tokens_valid_after.timestamp():
        raise Unauthorized("Session revoked")
    if principal.session_id is not None and auth.sessions.is_revoked(principal.session_id):
        raise Unauthorized("Session revoked")
    if time.time() >= principal.expires_at:
        raise Unauthorized("Session expired")


async def authenticate_websocket(conn: HTTPConnection, token: str | None) -> Principal:
    """A WebSocket's user: its token, else its session cookie from an allowed `Origin`.

    Browsers send cookies with cross-site WebSocket handshakes too (no CORS applies), so a
    cookie only counts from our own origin or a configured one (cross-site WebSocket hijacking).
    """
    auth = authenticator_of(conn)
    if token is not None:
        return await authenticate(auth, token)
    cookie = cookie_value(conn.scope, SESSION_COOKIE)
    if cookie is None:
        raise Unauthorized("Missing token")
    if not origin_allowed(conn.scope, auth.settings.cors_origins):
        raise Unauthorized("Origin not allowed for a cookie-authenticated WebSocket")
    principal, _ = await authenticate_cookie(auth, cookie, rotate_if_due=False)
    return principal


def check_csrf(request: HTTPConnection, principal: Principal, auth: Authenticator) -> None:
    """Double submit: the header must equal the cookie, and both belong to this session."""
    header = request.headers.get(CSRF_HEADER)
    cookie = cookie_value(request.scope, CSRF_COOKIE)
    assert principal.session_id is not None
    expected = csrf_token(principal.session_id, key=auth.session_keys.csrf)
    if (
        header is None
        or cookie is None
        or not hmac.compare_digest(header.encode(), cookie.encode())
        or not hmac.compare_digest(cookie.encode(), expected.encode())
    ):
        raise Forbidden("Missing or wrong X-CSRF-Token: send the orch_csrf cookie's value")


def secure_cookies(conn: HTTPConnection, auth: Authenticator) -> bool:
    """`Secure` whenever the request came over HTTPS, or always in production."""
    if auth.settings.environment == "production":
        return True
    return is_https(conn.scope, trusts=auth.trusts)


def cookie_headers(
    conn: HTTPConnection, auth: Authenticator, grant: Grant
) -> list[tuple[bytes, bytes]]:
    """The Set-Cookie headers that hand `grant` to the browser."""
    max_age = max(0, int((grant.refresh_expires_at - datetime.now(UTC)).total_seconds()))
    return session_cookies(
        token=grant.refresh_token,
        csrf=csrf_token(grant.session_id, key=auth.session_keys.csrf),
        max_age=max_age,
        secure=secure_cookies(conn, auth),
    )


async def authenticate_request(request: Request) -> Principal:
    """The bearer credential if there is one, else the session cookie (with its CSRF rule)."""
    auth = authenticator_of(request)
    authorization = request.headers.get("authorization")
    if authorization is not None:
        principal = await authenticate(auth, bearer_token(authorization))
    else:
        cookie = cookie_value(request.scope, SESSION_COOKIE)
        if cookie is None:
            raise Unauthorized()
        principal, grant = await authenticate_cookie(auth, cookie, rotate_if_due=True)
        if grant is not None:
            request.scope.setdefault("state", {})[STATE_KEY] = cookie_headers(request, auth, grant)
        if request.method not in SAFE_METHODS:
            check_csrf(request, principal, auth)
    return principal


async def current_user(request: Request) -> Principal:
    principal = await authenticate_request(request)
    request.state.user = principal.username
    if principal.read_only and request.method not in READ_ONLY_METHODS:
        raise Forbidden("This API key is read-only")
    return principal


CurrentUser = Annotated[Principal, Depends(current_user)]

# The dependencies that authenticate (for the OpenAPI security requirements).
AUTHENTICATING: set[Callable[..., Awaitable[Principal]]] = {current_user}


def require_role(*roles: Role) -> object:
    """A dependency that admits only `roles` (admins always).

    It authenticates itself rather than depending on `current_user`: each level of
    dependencies costs FastAPI a full resolution pass, a sixth of an authenticated read.
    """
    allowed = frozenset((*roles, "admin"))

    async def check(request: Request) -> Principal:
        user = await current_user(request)
        if user.role not in allowed:
            raise Forbidden(f"Role {user.role!r} may not do this")
        return user

    AUTHENTICATING.add(check)
    return Depends(check)


Reader = Annotated[Principal, require_role("member", "viewer", "worker")]
Writer = Annotated[Principal, require_role("member")]
WorkerRole = Annotated[Principal, require_role("worker")]
Admin = Annotated[Principal, require_role()]
