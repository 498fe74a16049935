"""Fan-out of the change feed to WebSocket and SSE subscribers, with replay from the log.

A subscriber registers for live changes *before* it reads the log, buffers what arrives
meanwhile, and de-duplicates by revision at the hand-off: the log read necessarily covers
everything this process had delivered at registration, so the union has no gap.
"""

from __future__ import annotations

import asyncio
import re
import sys
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass

import orjson

from orchestrator.background import cancel_and_wait
from orchestrator.db import Database, DatabaseUnavailable
from orchestrator.db.changelog import (
    Change,
    changes_after,
    latest_revision,
    oldest_retained_revision,
)
from orchestrator.db.feed import ChangeFeed
from orchestrator.errors import Unauthorized
from orchestrator.http.resource_ids import ResourceIdConvertor
from orchestrator.observability.metrics import Metrics

SUBSCRIBABLE: tuple[str, ...] = ("jobs", "tasks", "schedules", "queues", "users", "job_logs")
# Collections only admins may follow (as only they may list them over HTTP).
ADMINS_ONLY = frozenset({"users"})
# What a subscription without `collections` follows (as it did before schedules and queues).
DEFAULT_SUBSCRIPTION: tuple[str, ...] = ("jobs", "tasks")
# Collections whose changes are about one job each (their `id` is the job's): a subscription
# to them may follow a single job.
PER_JOB = frozenset({"jobs", "job_logs"})
# Changes after which every live connection checks that its credential still holds.
CREDENTIALS = frozenset({"users", "sessions", "api_keys"})
REPLAY_PAGE = 500
MAX_REVISION = 2**63 - 1  # revisions are PostgreSQL bigints


_JOB_ID = re.compile(ResourceIdConvertor.regex)


def one_job(value: object, collections: Sequence[str]) -> str | None:
    """The job a subscription to `collections` follows alone (its id in lower case), or None
    for every job; ValueError saying why `value` cannot be that."""
    if value is None:
        return None
    if not isinstance(value, str) or _JOB_ID.fullmatch(value) is None:
        raise ValueError("job must be a job's id (a UUID)")
    other = [name for name in collections if name not in PER_JOB]
    if other:
        raise ValueError(f"job filters only {' and '.join(sorted(PER_JOB))}, not {other[0]!r}")
    return value.lower()


def change_frame(change: Change) -> str:
    """The change as the wire shows it; `data` is spliced in as the stored canonical JSON."""
    return orjson.dumps(
        {
            "type": "change",
            "revision": change.revision,
            "collection": change.collection,
            "op": change.op,
            "id": change.resource_id,
            "data": orjson.Fragment(change.data) if change.data is not None else None,
        }
    ).decode()


def frame(body: dict[str, object]) -> str:
    return orjson.dumps(body).decode()


def text_frame(payload: bytes) -> bytes:
    """`payload` as one unmasked WebSocket text frame (RFC 6455 5.2), as a server sends it."""
    length = len(payload)
    if length < 126:
        head = bytes((0x81, length))
    elif length < 1 << 16:
        head = bytes((0x81, 126)) + length.to_bytes(2, "big")
    else:
        head = bytes((0x81, 127)) + length.to_bytes(8, "big")
    return head + payload


class SharedFrame:
    """One live change as every subscriber gets it: its text, and its WebSocket frame, built
    once (on first use) for all the connections that can take it straight away."""

    __slots__ = ("_wire", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self._wire: bytes | None = None

    @property
    def wire(self) -> bytes:
        if self._wire is None:
            self._wire = text_frame(self.text.encode())
        return self._wire


# Writes one whole WebSocket frame to the connection's socket now, if it can take it without
# waiting (open, not closing, below its transport's high-water mark); False otherwise.
DirectWrite = Callable[[bytes], bool]


class ByteBudget:
    """The bytes one user's connections hold queued (their own frames), against a limit."""

    __slots__ = ("limit", "used")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0


UNBOUNDED = 1 << 62


class Outbox:
    """A queue of frames for one connection, bounded in frames and in bytes (its own, and its
    user's): going over marks the client as too slow.

    Bytes are counted from `put` until the writer has sent them (it comes back to `take` for
    more), since a client that does not read holds the batch in the writer as much as in the
    queue. Live changes are one frame shared by every subscriber: they count for each
    connection, not against the user, whose budget is for what each connection alone holds
    (echoes, acknowledgements, replays).
    """

    def __init__(
        self,
        limit: int,
        *,
        max_bytes: int = UNBOUNDED,
        budget: ByteBudget | None = None,
        direct: DirectWrite | None = None,
    ) -> None:
        self.limit = limit
        self.direct = direct
        self.max_bytes = max_bytes
        self.budget = budget or ByteBudget(UNBOUNDED)
        self._frames: deque[str] = deque()
        self._bytes = 0  # queued and in flight
        self._own_bytes = 0  # the part of it counted against the user's budget
        self._in_flight = (0, 0)  # the batch the writer took last: its bytes, its own bytes
        self._ready = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()
        self._sent = asyncio.Event()  # set while nothing is queued and the last batch was sent
        self.overflowed = asyncio.Event()

    def __len__(self) -> int:
        return len(self._frames)

    def put_shared(self, shared: SharedFrame) -> bool:
        """Queue a live change's frame; or, when nothing is queued or being sent and the
        connection takes it at once, write its prebuilt frame to the socket directly (no
        wake-up of the writer, no per-connection encoding). What the socket's buffer then
        holds is bounded by its high-water mark, as when the writer sends."""
        direct = self.direct
        if (
            direct is not None
            and not self._frames
            and not self._in_flight[0]
            and not self.overflowed.is_set()
            and direct(shared.wire)
        ):
            return True
        return self.put(shared.text, shared=True)

    def put(self, text: str, *, shared: bool = False) -> bool:
        """Queue a frame without waiting; False (and `overflowed` set) when over a bound."""
        if self.overflowed.is_set():
            return False
        size = sys.getsizeof(text)  # what it holds in memory, whatever its characters
        own = 0 if shared else size
        if self._frames and (
            len(self._frames) >= self.limit
            or self._bytes + size > self.max_bytes
            or self.budget.used + own > self.budget.limit
        ):
            self.overflowed.set()
            self._frames.clear()  # never sent now: the client resumes from the log
            self.release()
            self._ready.set()
            return False
        self._frames.append(text)
        self._sent.clear()
        self._bytes += size
        self._own_bytes += own
        self.budget.used += own
        self._ready.set()
        if len(self._frames) >= self.limit or self._bytes >= self.max_bytes:
            self._room.clear()
        return True

    async def put_waiting(self, text: str) -> bool:
        """Queue a frame, waiting for room (replays go at the pace of the client)."""
        size = sys.getsizeof(text)
        while (
            self._frames
            and (len(self._frames) >= self.limit or self._bytes + size > self.max_bytes)
            and not self.overflowed.is_set()
        ):
            self._room.clear()
            await self._room.wait()
        return self.put(text)

    async def take(self) -> list[str]:
        """Every queued frame, waiting for at least one (the last batch has been sent)."""
        self._settle_in_flight()
        self._room.set()
        while not self._frames:
            self._sent.set()
            self._ready.clear()
            await self._ready.wait()
            if self.overflowed.is_set():
                return []
        frames = list(self._frames)
        self._frames.clear()
        self._in_flight = (self._bytes, self._own_bytes)
        self._room.set()
        return frames

    async def sent(self) -> None:
        """Wait until every frame queued so far has been taken and sent (the writer came
        back for more), or the queue overflowed (they never will be)."""
        waiters = [
            asyncio.ensure_future(self._sent.wait()),
            asyncio.ensure_future(self.overflowed.wait()),
        ]
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                await cancel_and_wait(waiter)

    def release(self) -> None:
        """Give back everything still counted (the connection is over, or overflowed)."""
        self.budget.used -= self._own_bytes
        self._bytes = self._own_bytes = 0
        self._in_flight = (0, 0)

    def _settle_in_flight(self) -> None:
        sent, own = self._in_flight
        self._in_flight = (0, 0)
        self._bytes -= sent
        self._own_bytes -= own
        self.budget.used -= own


class ResyncRequired(Exception):
    """The requested revision is older than the log keeps."""

    def __init__(self, revision: int) -> None:
        super().__init__(revision)
        self.revision = revision


class ReplayInterrupted(Exception):
    """The replay from the log failed half-way; the subscription is gone."""


class Subscriber:
    """One connection's subscription: which collections, and how far it has got in the log."""

    def __init__(self, hub: Hub, outbox: Outbox) -> None:
        self._hub = hub
        self.outbox = outbox
        self.collections: set[str] = set()
        self._floors: dict[str, int] = {}  # per collection: send only revisions above this
        self._only: dict[str, str] = {}  # per collection followed for one resource: its id
        self.position = 0  # the last revision this subscriber has looked at, in log order
        self._live = False
        self._pending: list[Change] | None = None
        self._pending_overflow = False

    # ----------------------------------------------------------------- called by the hub

    def offer(self, change: Change, shared: SharedFrame | None) -> None:
        if self._live:
            self._process(change, shared)
            return
        if self._pending is None:
            return
        if len(self._pending) >= self.outbox.limit:
            self._pending_overflow = True
            self._pending.clear()
        elif not self._pending_overflow:
            self._pending.append(change)

    def _process(self, change: Change, shared: SharedFrame | None) -> None:
        if change.revision <= self.position:
            return  # already seen: the hand-off from the log to the live feed overlaps
        self.position = change.revision
        if self._wants(change):
            if shared is not None:
                self.outbox.put_shared(shared)  # one frame for every subscriber
            else:
                self.outbox.put(change_frame(change))

    # --------------------------------------------------------------------- commands

    async def subscribe(
        self, collections: Sequence[str], since: int | None, *, only: str | None = None
    ) -> int:
        """Subscribe to `collections` (replaying after `since`), with `only`: to the changes
        of that resource alone (one job of `PER_JOB`); returns the ack revision.

        The ack is queued before any replayed change. Raises `ResyncRequired` (changing
        nothing) when `since` is older than the log keeps or newer than any revision, and
        `ReplayInterrupted` when the replay fails half-way (the connection must end).
        """
        hub = self._hub
        was_live = self._live
        # Register the live buffer first: from here on nothing delivered can be missed.
        self._live = False
        self._pending = []
        self._pending_overflow = False
        hub.register(self)
        delivered = hub.feed.delivered
        current = delivered
        try:
            if since is not None:
                current = max(current, await latest_revision(hub.db))
                oldest = await oldest_retained_revision(hub.db)
                if since > current or (oldest is not None and since + 1 < oldest):
                    raise ResyncRequired(current)
        except Exception:
            if not was_live:
                self.close()
                raise
            # Back to streaming what was subscribed before, through the buffer (or the log,
            # should the buffer have overflowed meanwhile).
            try:
                await self._catch_up(until_known=self.position)
            except Exception as exc:
                self.close()
                raise ReplayInterrupted(str(exc)) from exc
            raise
        except BaseException:
            self.close()
            raise
        start = since if since is not None else delivered
        for name in self.collections:
            # Collections already streaming have seen everything up to the current position.
            self._floors[name] = max(self._floors[name], self.position)
        for name in collections:
            self.collections.add(name)
            self._floors[name] = start
            if only is None:
                self._only.pop(name, None)
            else:
                self._only[name] = only
        self.position = min(self._floors[name] for name in self.collections)
        ack: dict[str, object] = {
            "type": "subscribed",
            "collections": list(collections),
            "revision": current,
        }
        if only is not None:
            ack["job"] = only
        self.outbox.put(frame(ack))
        try:
            await self._catch_up(until_known=delivered)
        except Exception as exc:
            self.close()
            raise ReplayInterrupted(str(exc)) from exc
        return current

    def unsubscribe(self, collections: Iterable[str]) -> None:
        for name in collections:
            self.collections.discard(name)
            self._only.pop(name, None)
        if not self.collections:
            self._hub.unregister(self)
            self._live = False
            self._pending = None

    def close(self) -> None:
        self._hub.unregister(self)
        self._live = False
        self._pending = None

    # ------------------------------------------------------------------- internals

    async def _catch_up(self, *, until_known: int) -> None:
        """Send from the log, then what the live feed buffered meanwhile, then go live.

        Both go at the client's pace (waiting for room in the send queue), and the live
        buffer keeps collecting while we wait; a buffer that overflows is dropped and the
        log read again, which is always complete.
        """
        need_log = self.position < until_known
        while True:
            if need_log and not await self._replay_log():
                return
            need_log = False
            if self._pending_overflow:
                self._pending = []
                self._pending_overflow = False
                need_log = True
                continue
            if not self._pending:
                self._go_live()
                return
            batch, self._pending = self._pending, []
            for change in batch:
                if not await self._send_waiting(change):
                    return

    async def _replay_log(self) -> bool:
        """Send every change after `position` in the log; False if the client is too slow."""
        while True:
            batch = await changes_after(self._hub.db, revision=self.position, limit=REPLAY_PAGE)
            if batch and batch[0].revision != self.position + 1:
                raise ReplayInterrupted("the log was pruned during the replay")
            for change in batch:
                if not await self._send_waiting(change):
                    return False
            if len(batch) < REPLAY_PAGE:
                return True

    async def _send_waiting(self, change: Change) -> bool:
        if change.revision <= self.position:
            return True
        self.position = change.revision
        if self._wants(change):
            await self.outbox.put_waiting(change_frame(change))
        return not self.outbox.overflowed.is_set()

    def _wants(self, change: Change) -> bool:
        name = change.collection
        if name not in self.collections or change.revision <= self._floors[name]:
            return False
        only = self._only.get(name)
        return only is None or only == change.resource_id

    def _go_live(self) -> None:
        pending, self._pending = self._pending or [], None
        self._live = True
        for change in pending:
            self._process(change, None)


@dataclass(eq=False)
class Session:
    """A live connection (WebSocket or SSE) of one user, for caps and revocation."""

    username: str
    revalidate: asyncio.Event
    budget: ByteBudget  # shared by the user's connections in this process


@dataclass(frozen=True, slots=True)
class End:
    """Why a live connection must end: `overflow`, `draining`, `expired` or `revoked`."""

    reason: str
    message: str


# How long a revoked connection waits for the change that revoked it to reach its client.
REVOKED_GRACE_SECONDS = 2.0


async def watch_session(
    session: Session,
    *,
    feed: ChangeFeed,
    outbox: Outbox,
    expires_at: float,
    recheck: Callable[[], Awaitable[None]],
    draining: asyncio.Event | None = None,
) -> End:
    """Wait until a WebSocket or SSE connection must end: its client is too slow, the
    server is shutting down (when `draining` is given), its credential expires, or
    `recheck` (run whenever the users changed) raises `Unauthorized`.

    A revoked connection ends after its client has been sent what was committed when the
    recheck failed: the recheck can read a change (a demotion, a disabled account) before
    this process's feed delivers it, and the client would otherwise never see why it ended.
    """
    overflow = asyncio.create_task(outbox.overflowed.wait())
    drain = asyncio.create_task(draining.wait()) if draining is not None else None
    try:
        while True:
            revalidate = asyncio.create_task(session.revalidate.wait())
            try:
                await asyncio.wait(
                    {task for task in (overflow, drain, revalidate) if task is not None},
                    timeout=max(0.0, expires_at - time.time()),
                    return_when=asyncio.FIRST_COMPLETED,
                )
            finally:
                await cancel_and_wait(revalidate)
            if overflow.done():
                return End("overflow", "Too slow: resume with since")
            if drain is not None and drain.done():
                return End("draining", "The server is shutting down")
            if time.time() >= expires_at:
                return End("expired", "Token expired")
            if session.revalidate.is_set():
                session.revalidate.clear()
                try:
                    await recheck()
                except Unauthorized as exc:
                    await _deliver_committed(feed, outbox)
                    return End("revoked", exc.message)
                except DatabaseUnavailable:
                    pass  # cannot tell now; the next change to users asks again
    finally:
        await cancel_and_wait(overflow)
        await cancel_and_wait(drain)


async def _deliver_committed(feed: ChangeFeed, outbox: Outbox) -> None:
    """Deliver what is committed now, and send the outbox's frames; bounded in time."""
    try:
        async with asyncio.timeout(REVOKED_GRACE_SECONDS):
            feed.wake()  # read the log now, not at the next poll
            await feed.wait_past(await latest_revision(feed.db), REVOKED_GRACE_SECONDS)
            await outbox.sent()
    except (TimeoutError, DatabaseUnavailable):
        pass  # a client that stopped reading, or a database away: end without it


class Hub:
    """Per-process fan-out: one feed listener, many subscribers."""

    def __init__(
        self,
        *,
        db: Database,
        feed: ChangeFeed,
        metrics: Metrics,
        user_queue_bytes: int = UNBOUNDED,
    ) -> None:
        self.db = db
        self.feed = feed
        self.metrics = metrics
        self.user_queue_bytes = user_queue_bytes
        self._subscribers: set[Subscriber] = set()
        self._sessions: set[Session] = set()
        self._per_user: dict[str, int] = {}
        self._budgets: dict[str, ByteBudget] = {}
        self.draining = asyncio.Event()  # set when the server begins to shut down

    async def start(self) -> None:
        self.feed.add_listener(self.on_change)

    async def stop(self) -> None:
        self.feed.remove_listener(self.on_change)

    def drain(self) -> None:
        """The server is shutting down: streams end now rather than hold the shutdown up."""
        self.draining.set()

    def register(self, subscriber: Subscriber) -> None:
        self._subscribers.add(subscriber)

    def unregister(self, subscriber: Subscriber) -> None:
        self._subscribers.discard(subscriber)

    def on_change(self, change: Change) -> None:
        if change.collection in CREDENTIALS:
            for session in self._sessions:
                session.revalidate.set()
            shared = None
        else:
            shared = SharedFrame(change_frame(change)) if self._subscribers else None
        for subscriber in tuple(self._subscribers):
            subscriber.offer(change, shared)

    # ------------------------------------------------------------------- sessions

    def open_session(self, username: str, *, limit: int) -> Session | None:
        """A session for `username`, or None when the user is at the connection cap."""
        key = username.casefold()
        if self._per_user.get(key, 0) >= limit:
            return None
        self._per_user[key] = self._per_user.get(key, 0) + 1
        budget = self._budgets.setdefault(key, ByteBudget(self.user_queue_bytes))
        session = Session(username=key, revalidate=asyncio.Event(), budget=budget)
        self._sessions.add(session)
        return session

    def close_session(self, session: Session) -> None:
        if session not in self._sessions:
            return
        self._sessions.discard(session)
        left = self._per_user.get(session.username, 1) - 1
        if left > 0:
            self._per_user[session.username] = left
        else:
            self._per_user.pop(session.username, None)
            self._budgets.pop(session.username, None)

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)
