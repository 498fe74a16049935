"""`GET /api/v1/changes`: the change feed as Server-Sent Events (event id = revision)."""

from __future__ import annotations

import asyncio
import contextlib
import re
from typing import Annotated

import orjson
import structlog
from fastapi import APIRouter, Header, Query, Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from orchestrator.auth.deps import Principal, Reader, recheck
from orchestrator.background import cancel_and_wait
from orchestrator.changes.hub import (
    ADMINS_ONLY,
    DEFAULT_SUBSCRIPTION,
    MAX_REVISION,
    SUBSCRIBABLE,
    Hub,
    Outbox,
    ReplayInterrupted,
    ResyncRequired,
    Session,
    Subscriber,
    one_job,
    watch_session,
)
from orchestrator.db import DatabaseUnavailable
from orchestrator.errors import Forbidden, Unprocessable
from orchestrator.http.errors import error_response
from orchestrator.http.resource_ids import ResourceIdConvertor
from orchestrator.services import Services, services_of

log = structlog.get_logger(__name__)
router = APIRouter()

KEEPALIVE_SECONDS = 15.0
RETRY_MILLISECONDS = 2000


def parse_collections(value: str | None) -> list[str]:
    if value is None:
        return list(DEFAULT_SUBSCRIPTION)
    names = [part.strip() for part in value.split(",") if part.strip()]
    unknown = [name for name in names if name not in SUBSCRIBABLE]
    if not names or unknown:
        raise Unprocessable(
            "Unknown collection",
            details=[
                {"field": "collections", "reason": f"comma-separated: {', '.join(SUBSCRIBABLE)}"}
            ],
        )
    return list(dict.fromkeys(names))


# ASCII digits only: str.isdigit() also takes "²" (which int() then refuses), and int() takes
# other scripts' digits (Arabic-Indic ones, say).
_REVISION = re.compile(r"[0-9]{1,19}")


def parse_last_event_id(value: str | None) -> int | None:
    """The revision `Last-Event-ID` names; absent when empty, 422 when it is no revision."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    if not _REVISION.fullmatch(text) or int(text) > MAX_REVISION:
        raise Unprocessable(
            "Invalid Last-Event-ID",
            details=[
                {"field": "Last-Event-ID", "reason": f"a revision (an integer 0..{MAX_REVISION})"}
            ],
        )
    return int(text)


def sse_event(text: str, *, continues_from: int | None = None) -> bytes:
    """One frame of the feed as an SSE event: changes are plain messages with id = revision.

    `subscribed` carries as its id the revision the stream continues from (`continues_from`
    on a resume, else the current one), so that a client that reconnects before any change
    resumes from there instead of missing what happened in between.
    """
    body = orjson.loads(text)
    kind = body.get("type")
    if kind == "change":
        return f"id: {body['revision']}\ndata: {text}\n\n".encode()
    if kind == "resync_required":
        return f"id: {body['revision']}\nevent: {kind}\ndata: {text}\n\n".encode()
    if kind == "subscribed":
        revision = continues_from if continues_from is not None else body["revision"]
        return f"id: {revision}\nevent: {kind}\ndata: {text}\n\n".encode()
    return f"event: {kind}\ndata: {text}\n\n".encode()


class EventStream(Response):
    """A streaming response that follows one subscription until the client leaves."""

    media_type = "text/event-stream"

    def __init__(
        self,
        *,
        services: Services,
        hub: Hub,
        session: Session,
        principal: Principal,
        collections: list[str],
        since: int | None,
        only: str | None = None,
    ) -> None:
        super().__init__(status_code=200)
        # No Content-Length: the stream ends when the subscription does.
        self.raw_headers = [
            (b"content-type", b"text/event-stream; charset=utf-8"),
            (b"cache-control", b"no-cache"),
            (b"x-accel-buffering", b"no"),
        ]
        self.services = services
        self.hub = hub
        self.session = session
        self.principal = principal
        self.expires_at = principal.expires_at
        self.collections = collections
        self.since = since
        self.only = only
        self.outbox = Outbox(
            services.settings.ws_send_queue_frames,
            max_bytes=services.settings.ws_send_queue_bytes,
            budget=session.budget,
        )
        self.subscriber = Subscriber(hub, self.outbox)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        tasks = {
            asyncio.create_task(self._write(send), name="sse-write"),
            asyncio.create_task(self._follow(), name="sse-follow"),
            asyncio.create_task(self._until_disconnect(receive), name="sse-disconnect"),
        }
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                exc = task.exception()
                if exc is not None and not isinstance(exc, OSError):
                    log.error("sse_error", exc_info=exc)
        finally:
            self.subscriber.close()
            self.hub.close_session(self.session)
            for task in tasks:
                await cancel_and_wait(task)
            self.outbox.release()
        with contextlib.suppress(OSError):
            await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _write(self, send: Send) -> None:
        await send(
            {
                "type": "http.response.body",
                "body": f"retry: {RETRY_MILLISECONDS}\n\n".encode(),
                "more_body": True,
            }
        )
        while True:
            try:
                frames = await asyncio.wait_for(self.outbox.take(), KEEPALIVE_SECONDS)
            except TimeoutError:
                frames = []
                body = b": keepalive\n\n"
            else:
                if self.outbox.overflowed.is_set():
                    return  # too slow: the client reconnects with Last-Event-ID
                since = self.since
                body = b"".join(sse_event(text, continues_from=since) for text in frames)
            await send({"type": "http.response.body", "body": body, "more_body": True})

    async def _follow(self) -> None:
        """Subscribe, then end the stream at token expiry, revocation, overflow or shutdown."""
        try:
            await self.subscriber.subscribe(self.collections, self.since, only=self.only)
        except ResyncRequired as exc:
            self.outbox.put(
                orjson.dumps({"type": "resync_required", "revision": exc.revision}).decode()
            )
            self.since = exc.revision
            await self.subscriber.subscribe(self.collections, exc.revision, only=self.only)
        except (DatabaseUnavailable, ReplayInterrupted) as exc:
            log.warning("sse_subscribe_failed", error=type(exc).__name__)
            return
        # Then the client reconnects with Last-Event-ID (elsewhere, at shutdown).
        await watch_session(
            self.session,
            feed=self.hub.feed,
            outbox=self.outbox,
            expires_at=self.expires_at,
            recheck=lambda: recheck(
                self.services.authenticator,
                self.principal,
                admin=not ADMINS_ONLY.isdisjoint(self.collections),
            ),
            draining=self.hub.draining,
        )

    @staticmethod
    async def _until_disconnect(receive: Receive) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass


@router.get(
    "/api/v1/changes",
    summary="The change feed as Server-Sent Events",
    response_class=Response,
    responses={
        200: {"content": {"text/event-stream": {}}},
        403: {"description": "A collection only admins may follow (users)"},
    },
)
async def change_stream(
    request: Request,
    user: Reader,
    *,
    collections: Annotated[
        str | None,
        Query(
            description="comma-separated: jobs, tasks, schedules, queues, users (admins only),"
            " job_logs (default: jobs, tasks)"
        ),
    ] = None,
    job: Annotated[
        str | None,
        Query(
            description="Follow this job alone (its id): only with collections jobs and job_logs",
            pattern=f"^{ResourceIdConvertor.regex}$",
        ),
    ] = None,
    since: Annotated[
        int | None, Query(ge=0, le=MAX_REVISION, description="replay changes after it")
    ] = None,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
) -> Response:
    services = services_of(request)
    names = parse_collections(collections)
    try:
        only = one_job(job, names)
    except ValueError as exc:
        raise Unprocessable("Invalid job", details=[{"field": "job", "reason": str(exc)}]) from None
    refused = [name for name in names if name in ADMINS_ONLY]
    if refused and user.role != "admin":
        raise Forbidden(f"Only admins may follow {refused[0]!r}")
    resume = parse_last_event_id(last_event_id)
    hub = services.hub
    session = hub.open_session(user.username, limit=services.settings.ws_max_connections_per_user)
    if session is None:
        return error_response(request.scope, 429, "Too many live connections for this user")
    return EventStream(
        services=services,
        hub=hub,
        session=session,
        principal=user,
        collections=names,
        since=resume if resume is not None else since,
        only=only,
    )
