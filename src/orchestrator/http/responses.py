"""Data responses and RFC 9110 conditional GETs over bodies serialised once."""

from __future__ import annotations

from collections.abc import Mapping

from starlette.requests import Request
from starlette.responses import Response

from orchestrator.http.etag import none_match, require_match

# Clients may keep a copy but must revalidate it; the answer depends on who asks.
CACHE_CONTROL = "private, no-cache"
VARY = "Authorization"


def data_headers(etag: str, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    headers = {"ETag": etag, "Cache-Control": CACHE_CONTROL, "Vary": VARY}
    if extra:
        headers.update(extra)
    return headers


_CACHING = ((b"cache-control", CACHE_CONTROL.encode()), (b"vary", VARY.encode()))
_JSON = (b"content-type", b"application/json")


class _Prepared(Response):
    """A `Response` given the raw headers Starlette's `init_headers` would build from the
    same arguments, in the same order: data responses and 304s answer most reads, and it
    lowered and encoded each header again for each of them."""

    def __init__(self, status_code: int, body: bytes, raw_headers: list[tuple[bytes, bytes]]):
        self.status_code = status_code
        self.background = None
        self.body = body
        self.raw_headers = raw_headers


def data_response(
    body: bytes, etag: str, *, status: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    """A JSON body that is already canonical, with its ETag and caching headers."""
    if headers or status not in (200, 201):
        return Response(
            body,
            status_code=status,
            media_type="application/json",
            headers=data_headers(etag, headers),
        )
    length = (b"content-length", str(len(body)).encode("ascii"))
    return _Prepared(status, body, [(b"etag", etag.encode("latin-1")), *_CACHING, length, _JSON])


def not_modified(etag: str, headers: Mapping[str, str] | None = None) -> Response:
    """304: no body, and the headers a 200 would have carried for caching."""
    if headers:
        return Response(status_code=304, headers=data_headers(etag, headers))
    return _Prepared(304, b"", [(b"etag", etag.encode("latin-1")), *_CACHING])


def conditional_get(
    request: Request, etag: str, headers: Mapping[str, str] | None = None
) -> Response | None:
    """The 304 to send instead of the body, or None; raises 412 for a failed `If-Match`.

    Call it only once the answer would be a 200: preconditions never turn a 401, 403,
    404 or 422 into something else.
    """
    request_headers = request.headers
    if_match = request_headers.get("if-match")
    if if_match is not None:
        require_match(if_match, etag)
    if none_match(request_headers.get("if-none-match"), etag):
        return not_modified(etag, headers)
    return None
