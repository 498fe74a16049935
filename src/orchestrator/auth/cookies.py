"""The browser session's cookies: the HttpOnly session cookie and the readable CSRF cookie.

The session cookie holds a browser-session token (a refresh-style secret, rotated like a
refresh token); the CSRF cookie holds a value derived from the session id, which a page of our
own origin copies into `X-CSRF-Token` on unsafe requests (double submit, bound to the session).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Callable

from starlette.requests import cookie_parser
from starlette.types import ASGIApp, Message, Receive, Scope, Send

SESSION_COOKIE = "orch_session"
CSRF_COOKIE = "orch_csrf"
CSRF_HEADER = "x-csrf-token"
# Where a request that rotated its cookie leaves the new Set-Cookie headers for the response.
STATE_KEY = "session_cookies"


def csrf_token(session_id: str, *, key: bytes) -> str:
    mac = hmac.new(key, session_id.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


def _cookie(name: str, value: str, *, max_age: int, secure: bool, http_only: bool) -> bytes:
    parts = [f"{name}={value}", "Path=/", f"Max-Age={max_age}", "SameSite=Strict"]
    if http_only:
        parts.append("HttpOnly")
    if secure:
        parts.append("Secure")
    return "; ".join(parts).encode("latin-1")


def session_cookies(
    *, token: str, csrf: str, max_age: int, secure: bool
) -> list[tuple[bytes, bytes]]:
    """The two Set-Cookie headers of a signed-in browser."""
    return [
        (
            b"set-cookie",
            _cookie(SESSION_COOKIE, token, max_age=max_age, secure=secure, http_only=True),
        ),
        (
            b"set-cookie",
            _cookie(CSRF_COOKIE, csrf, max_age=max_age, secure=secure, http_only=False),
        ),
    ]


def clearing_cookies(*, secure: bool) -> list[tuple[bytes, bytes]]:
    """Set-Cookie headers that make the browser drop both cookies."""
    return [
        (b"set-cookie", _cookie(SESSION_COOKIE, "", max_age=0, secure=secure, http_only=True)),
        (b"set-cookie", _cookie(CSRF_COOKIE, "", max_age=0, secure=secure, http_only=False)),
    ]


def cookie_value(scope: Scope, name: str) -> str | None:
    """One cookie of the request, or None (malformed Cookie headers count as none)."""
    for header, value in scope.get("headers", ()):
        if header == b"cookie":
            found = cookie_parser(value.decode("latin-1")).get(name)
            if found:
                return found
    return None


def is_https(scope: Scope, *, trusts: Callable[[str], bool]) -> bool:
    """Whether the client reached us over HTTPS: directly, or as a trusted proxy says."""
    if scope.get("scheme") in ("https", "wss"):
        return True
    client = scope.get("client")
    if not client or not trusts(str(client[0])):
        return False
    header: bytes
    for name, header in scope.get("headers", ()):
        if name == b"x-forwarded-proto":
            # the proxy next to us appends last
            return header.decode("latin-1").rsplit(",", 1)[-1].strip().lower() == "https"
    return False


def origin_allowed(scope: Scope, allowed: list[str]) -> bool:
    """Whether the request's `Origin` is our own (its host is the `Host` we were reached at)
    or one of `allowed`; a request without an `Origin` is not from a page at all."""
    origin = host = None
    for header, value in scope.get("headers", ()):
        if header == b"origin":
            origin = value.decode("latin-1").strip()
        elif header == b"host":
            host = value.decode("latin-1").strip().lower()
    if not origin or origin == "null":
        return False
    if origin in allowed:
        return True
    _, separator, netloc = origin.partition("://")
    return bool(separator) and host is not None and netloc.lower() == host


class SessionCookieMiddleware:
    """Adds the Set-Cookie headers of a browser session rotated while serving the request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not _has_cookie(scope):
            await self.app(scope, receive, send)
            return

        async def send_with_cookies(message: Message) -> None:
            if message["type"] == "http.response.start":
                cookies = scope.get("state", {}).get(STATE_KEY)
                if cookies:
                    message["headers"] = [*message.get("headers", ()), *cookies]
            await send(message)

        await self.app(scope, receive, send_with_cookies)


def _has_cookie(scope: Scope) -> bool:
    return any(header == b"cookie" for header, _ in scope.get("headers", ()))
