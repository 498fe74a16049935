"""Headers every response carries."""

from __future__ import annotations

from collections.abc import Iterable

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


_API = (*_COMMON, (b"content-security-policy", _API_CSP))
_DOCS = (*_COMMON, (b"content-security-policy", _DOCS_CSP))
_CONSOLE = (*_COMMON, (b"content-security-policy", _CONSOLE_CSP))


def security_headers(path: str) -> tuple[tuple[bytes, bytes], ...]:
    """The headers every response to `path` carries (`Edge` adds them)."""
    if path in _DOCS_PATHS:
        return _DOCS
    if path.startswith(CONSOLE_PREFIX):
        return _CONSOLE
    return _API


def without_server(headers: Iterable[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """`headers` less any `Server` (a response names no software)."""
    return [header for header in headers if header[0].lower() != b"server"]
