"""`Idempotency-Key` on creating POSTs: the header read into a request, and a stored first
response replayed (the store itself is `orchestrator.db.idempotency`)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

from starlette.requests import Request
from starlette.responses import Response

from orchestrator.db import Database
from orchestrator.db.idempotency import (
    AlreadyExists,
    DuplicateRequest,
    IdempotentRequest,
    StoredResponse,
    stored_response,
)
from orchestrator.errors import Conflict, Unprocessable
from orchestrator.http.responses import data_response
from orchestrator.representation import canonical_json, etag_for

HEADER = "idempotency-key"
# On a create answered with an existing resource (the domain's unique rule), its id.
DUPLICATE_OF = "Orchestrator-Duplicate-Of"
_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")


def idempotent_request(
    headers: Mapping[str, str], *, user_id: str, method: str, path: str, payload: Any
) -> IdempotentRequest | None:
    """The key of a request (422 when malformed), or None when it carries none."""
    key = headers.get(HEADER)
    if key is None:
        return None
    if _KEY.match(key) is None:
        raise Unprocessable(
            "Invalid Idempotency-Key",
            details=[{"field": "Idempotency-Key", "reason": "1-255 visible ASCII characters"}],
        )
    digest = hashlib.sha256(f"{method} {path}\n".encode() + canonical_json(payload)).hexdigest()
    return IdempotentRequest(user_id=user_id, key=key, request_hash=digest)


def replay(stored: StoredResponse, *, location: str | None) -> Response:
    """The first response again: same status, body and so the same ETag."""
    headers = {"Idempotent-Replayed": "true"}
    duplicate = stored.status_code == 200
    if location is not None:
        # A 200 answered with a resource that was already there: its place, not a new one's.
        headers["Content-Location" if duplicate else "Location"] = location
    if duplicate and stored.resource_id is not None:
        headers[DUPLICATE_OF] = stored.resource_id
    return data_response(
        stored.body, etag_for(stored.body), status=stored.status_code, headers=headers
    )


class Created(Protocol):
    """A resource just created: its id, canonical body and that body's ETag."""

    @property
    def id(self) -> str: ...
    @property
    def body(self) -> bytes: ...
    @property
    def etag(self) -> str: ...


async def create_response(
    request: Request,
    db: Database,
    *,
    user_id: str,
    path: str,
    payload: Any,
    create: Callable[[IdempotentRequest | None], Awaitable[Created]],
    location: Callable[[str], str],
) -> Response:
    """The 201 of `create`; the 200 of the existing resource it named instead (its id in
    `Orchestrator-Duplicate-Of`); or, for an `Idempotency-Key` used before, the first
    response."""
    idempotency = idempotent_request(
        request.headers, user_id=user_id, method="POST", path=path, payload=payload
    )
    if idempotency is not None:
        stored = await stored_response(db, idempotency)
        if stored is not None:
            return replay(stored, location=location(stored.resource_id or ""))
    try:
        created = await create(idempotency)
    except DuplicateRequest:
        assert idempotency is not None
        stored = await stored_response(db, idempotency)
        if stored is None:
            raise Conflict("A request with this Idempotency-Key is in progress") from None
        return replay(stored, location=location(stored.resource_id or ""))
    except AlreadyExists as exists:
        found = exists.resource
        return data_response(
            found.body,
            etag_for(found.body),
            headers={"Content-Location": location(found.id), DUPLICATE_OF: found.id},
        )
    return data_response(
        created.body, created.etag, status=201, headers={"Location": location(created.id)}
    )
