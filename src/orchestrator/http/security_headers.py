"""Headers every response carries."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

_API_CSP = b"default-src 'none'; frame-ancestors 'none'"
# Swagger UI and ReDoc run from files the service serves; both set inline styles, and ReDoc
# searches in a worker it starts from a blob.
_DOCS_CSP = (
    b"default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    b"img-src 'self' data:; font-src 'self' data:; connect-src 'self'; "
    b"worker-src 'self' blob:; frame-ancestors 'none'"
)
_DOCS_PATHS = frozenset({"/docs", "/redoc"})
# The console: its own files only, no inline script or style, no plugins.
_CONSOLE_CSP = (
    b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    b"connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    b"frame-ancestors 'none'"
)
CONSOLE_PREFIX = "/console"
_COMMON = (
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
)


class SecurityHeadersMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._api = [*_COMMON, (b"content-security-policy", _API_CSP)]
        self._docs = [*_COMMON, (b"content-security-policy", _DOCS_CSP)]
        self._console = [*_COMMON, (b"content-security-policy", _CONSOLE_CSP)]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        if path in _DOCS_PATHS:
            extra = self._docs
        elif path.startswith(CONSOLE_PREFIX):
            extra = self._console
        else:
            extra = self._api

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [h for h in message.get("headers", ()) if h[0].lower() != b"server"]
                headers.extend(extra)
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)
