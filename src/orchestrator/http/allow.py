"""A 405's `Allow` lists every method the path supports.

Starlette answers 405 from the first route whose path matched, so with one route per method
(`GET /jobs`, `POST /jobs`) `Allow` named only one of them; here it is the union of all.
"""

from __future__ import annotations

from fastapi.routing import iter_route_contexts
from starlette.routing import Match
from starlette.types import Scope


def allowed_methods(scope: Scope) -> list[str]:
    """The methods of every route whose path matches this request."""
    methods: set[str] = set()
    for route in iter_route_contexts(scope["app"].routes):
        match, _ = route.matches(scope)
        if match != Match.NONE and route.methods:
            methods |= set(route.methods)
    if "GET" in methods:
        methods.add("HEAD")
    return sorted(methods)


def with_allow(headers: list[tuple[bytes, bytes]], scope: Scope) -> list[tuple[bytes, bytes]]:
    """A 405's `headers`, whose `Allow` names every method of the path (`Edge` calls it)."""
    allow = ", ".join(allowed_methods(scope)).encode("latin-1")
    return [*(header for header in headers if header[0].lower() != b"allow"), (b"allow", allow)]
