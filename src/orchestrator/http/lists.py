"""Lists: keyset pages with opaque cursors, and list bodies cached per collection revision."""

from __future__ import annotations

import base64
import binascii
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import orjson
from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import Response

from orchestrator.db.keyset import Position
from orchestrator.errors import Unprocessable
from orchestrator.http.responses import conditional_get, data_response
from orchestrator.representation import canonical_json, etag_for
from orchestrator.timestamps import as_utc, iso

MAX_LIMIT = 1000
DEFAULT_LIMIT = 100


@dataclass(frozen=True, slots=True)
class PageRequest:
    """`limit` is None for the whole list (the contract's default)."""

    limit: int | None
    after: Position | None
    cursor: str | None


def encode_cursor(position: Position) -> str:
    raw = orjson.dumps([iso(position.created_at), position.id])
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode_cursor(cursor: str) -> Position:
    """The position a cursor we issued stands for; 422 for anything else."""
    try:
        if len(cursor) > 200:
            raise ValueError
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created_at, item_id = orjson.loads(raw)
        if not isinstance(created_at, str) or not isinstance(item_id, str) or len(item_id) > 64:
            raise ValueError
        return Position(as_utc(created_at), item_id)
    except (ValueError, TypeError, binascii.Error, orjson.JSONDecodeError):
        raise Unprocessable(
            "Invalid cursor", details=[{"field": "cursor", "reason": "not a cursor we issued"}]
        ) from None


def single_param(params: QueryParams, name: str) -> str | None:
    values = params.getlist(name)
    if len(values) > 1:
        raise Unprocessable(
            f"Repeated parameter {name!r}", details=[{"field": name, "reason": "given twice"}]
        )
    return values[0] if values else None


PAGE_PARAMS = frozenset({"limit", "cursor"})


def refuse_unknown(params: QueryParams, known: frozenset[str]) -> None:
    """422 for a query parameter the route does not read: a misspelt filter must not
    silently return the whole list."""
    unknown = sorted({name for name in params if name not in known})
    if unknown:
        takes = f"known: {', '.join(sorted(known))}" if known else "this list takes none"
        reason = f"unknown parameter; {takes}"
        raise Unprocessable(
            f"Unknown query parameter {unknown[0]!r}",
            details=[{"field": name, "reason": reason} for name in unknown],
        )


def page_request(params: QueryParams, *, filters: frozenset[str] = frozenset()) -> PageRequest:
    """`limit` (1..1000) and `cursor` from the query; 422 when they are not valid, or when
    the query has a parameter that is neither of them nor one of the list's `filters`."""
    refuse_unknown(params, PAGE_PARAMS | filters)
    raw_limit = single_param(params, "limit")
    cursor = single_param(params, "cursor")
    limit: int | None = None
    if raw_limit is not None:
        if (
            not raw_limit.isascii()
            or not raw_limit.isdigit()
            # int() refuses strings of over 4,300 digits (a 500): no valid limit is that long
            or len(raw_limit) > len(str(MAX_LIMIT))
            or not 1 <= int(raw_limit) <= MAX_LIMIT
        ):
            raise Unprocessable(
                "Invalid limit",
                details=[{"field": "limit", "reason": f"an integer from 1 to {MAX_LIMIT}"}],
            )
        limit = int(raw_limit)
    after = decode_cursor(cursor) if cursor is not None else None
    if after is not None and limit is None:
        limit = DEFAULT_LIMIT
    return PageRequest(limit=limit, after=after, cursor=cursor)


def next_link(path: str, *, cursor: str, limit: int, extra: Sequence[tuple[str, str]] = ()) -> str:
    """The `Link` header value for the next page."""
    query = urlencode([*extra, ("limit", str(limit)), ("cursor", cursor)])
    return f'<{path}?{query}>; rel="next"'


@dataclass(frozen=True, slots=True)
class CachedList:
    body: bytes
    etag: str
    link: str | None


class ListCache:
    """The serialised body of each list query at its collection's newest revision served,
    least recently used out.

    A query keeps one entry: a newer revision replaces the older one, which can never be
    asked for again (revisions only grow). Keeping every revision instead made a busy
    collection fill the whole byte budget with dead bodies. Bounded by entry count and by
    total body bytes.
    """

    def __init__(self, *, max_entries: int = 256, max_bytes: int = 64 * 1024 * 1024) -> None:
        self._entries: OrderedDict[Hashable, tuple[int, CachedList]] = OrderedDict()
        self._bytes = 0
        self._max_entries = max_entries
        self._max_bytes = max_bytes

    def get(self, query: Hashable, revision: int) -> CachedList | None:
        found = self._entries.get(query)
        if found is None or found[0] != revision:
            return None
        self._entries.move_to_end(query)
        return found[1]

    def put(self, query: Hashable, revision: int, entry: CachedList) -> None:
        old = self._entries.get(query)
        if old is not None and old[0] > revision:
            return  # a request that read an older revision finished last
        if len(entry.body) > self._max_bytes:
            return
        if old is not None:
            del self._entries[query]
            self._bytes -= len(old[1].body)
        self._entries[query] = (revision, entry)
        self._bytes += len(entry.body)
        while len(self._entries) > self._max_entries or self._bytes > self._max_bytes:
            _query, (_revision, dropped) = self._entries.popitem(last=False)
            self._bytes -= len(dropped.body)

    @property
    def bytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._entries)


# Reads one page: its items (bodies) and where the next page starts, if there is one.
PageReader = Callable[[PageRequest], Awaitable[tuple[list[dict[str, Any]], Position | None]]]


async def serve_list(
    request: Request,
    *,
    cache: ListCache,
    revision: int,
    key: Hashable,
    page: PageRequest,
    read: PageReader,
    envelope: Callable[[list[dict[str, Any]]], dict[str, Any]],
    link_params: Sequence[tuple[str, str]] = (),
) -> Response:
    """A list's 200 or 304; the collection is read only when this revision was never served."""
    query = (key, page.limit, page.cursor)
    entry = cache.get(query, revision)
    if entry is None:
        items, following = await read(page)
        document = envelope(items)
        link = None
        if page.limit is not None:
            cursor = encode_cursor(following) if following is not None else None
            document["next_cursor"] = cursor
            if cursor is not None:
                link = next_link(
                    request.url.path, cursor=cursor, limit=page.limit, extra=link_params
                )
        body = canonical_json(document)
        entry = CachedList(body=body, etag=etag_for(body), link=link)
        cache.put(query, revision, entry)
    headers = {"Link": entry.link} if entry.link is not None else None
    return conditional_get(request, entry.etag, headers) or data_response(
        entry.body, entry.etag, headers=headers
    )
