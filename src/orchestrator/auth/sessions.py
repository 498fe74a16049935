"""Sessions and their refresh tokens: start, rotate (with reuse detection), list and revoke.

A session is one sign-in. Its refresh tokens form one family: each is exchanged once for a
successor; presenting a used-up token again means it was copied, and the whole session ends
(RFC 9700 §4.14.2), except within a short grace window after its rotation, where it answers
with the same successor it already produced (two browser tabs refreshing at once). Browser
sessions are the same family kept in a cookie.
"""

from __future__ import annotations

import hashlib
import hmac
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal

from orchestrator.auth import opaque
from orchestrator.auth.tokens import Issued, TokenService
from orchestrator.auth.users import User, write_password
from orchestrator.db import Database, Row, Transaction
from orchestrator.db.changelog import Change, record_change
from orchestrator.errors import NotFound, Unauthorized
from orchestrator.timestamps import as_utc, iso

Kind = Literal["token", "browser"]
MAX_USER_AGENT = 200
MAX_ADDRESS = 64


@dataclass(frozen=True, slots=True)
class Lifetimes:
    """How long a refresh token lives unused, a session at most, and the reuse grace."""

    idle: timedelta
    max_age: timedelta
    grace: timedelta


@dataclass(frozen=True, slots=True)
class SessionKeys:
    """Keys derived from the service's secret: rotation successors and CSRF tokens."""

    successor: bytes = field(repr=False)
    csrf: bytes = field(repr=False)

    @classmethod
    def from_secret(cls, secret: str) -> SessionKeys:
        def derive(purpose: bytes) -> bytes:
            return hmac.new(secret.encode(), purpose, hashlib.sha256).digest()

        return cls(successor=derive(b"orch refresh successor"), csrf=derive(b"orch csrf"))


@dataclass(frozen=True, slots=True)
class TokenRecord:
    """A refresh (or browser-session) token as stored, with its session and user."""

    token_hash: str
    session_id: str
    kind: Kind
    user_id: str
    username: str
    session_created_at: datetime
    session_expires_at: datetime
    session_revoked_at: datetime | None
    created_at: datetime
    expires_at: datetime
    used_at: datetime | None
    access_jti: str | None
    access_iat_us: int | None
    access_exp: int | None

    def refresh_expires_at(self) -> datetime:
        """When this token stops working unused: its idle end, or the session's end."""
        return min(self.expires_at, self.session_expires_at)


@dataclass(frozen=True, slots=True)
class Grant:
    """What a sign-in or a refresh hands out: a refresh token (or cookie) and an access token."""

    session_id: str
    username: str
    refresh_token: str
    refresh_expires_at: datetime
    access: Issued | None
    record: TokenRecord


@dataclass(frozen=True, slots=True)
class SessionInfo:
    id: str
    username: str
    kind: Kind
    created_at: datetime
    last_used_at: datetime
    expires_at: datetime
    user_agent: str | None
    client_address: str | None


class TokenReused(Unauthorized):
    """A used-up refresh token came back after the grace window: its session is revoked."""

    def __init__(self, session_id: str) -> None:
        super().__init__("Refresh token already used; the session is revoked")
        self.session_id = session_id


_RECORD = (
    "SELECT t.token_hash, t.session_id, s.kind, s.user_id, u.username, "
    "s.created_at AS session_created_at, s.expires_at AS session_expires_at, "
    "s.revoked_at AS session_revoked_at, t.created_at, t.expires_at, t.used_at, "
    "t.access_jti, t.access_iat_us, t.access_exp, u.disabled, u.tokens_valid_after "
    "FROM refresh_tokens t JOIN sessions s ON s.id = t.session_id "
    "JOIN users u ON u.id = s.user_id WHERE t.token_hash = :hash"
)


def _optional_time(value: object) -> datetime | None:
    return as_utc(value) if isinstance(value, datetime | str) else None


def _record(row: Row) -> TokenRecord:
    return TokenRecord(
        token_hash=row["token_hash"],
        session_id=row["session_id"],
        kind=row["kind"],
        user_id=row["user_id"],
        username=row["username"],
        session_created_at=as_utc(row["session_created_at"]),
        session_expires_at=as_utc(row["session_expires_at"]),
        session_revoked_at=_optional_time(row["session_revoked_at"]),
        created_at=as_utc(row["created_at"]),
        expires_at=as_utc(row["expires_at"]),
        used_at=_optional_time(row["used_at"]),
        access_jti=row["access_jti"],
        access_iat_us=row["access_iat_us"],
        access_exp=row["access_exp"],
    )


def _usable(row: Row, now: datetime) -> str | None:
    """Why the session of this token row can no longer be used, or None."""
    if row["session_revoked_at"] is not None:
        return "Session revoked"
    if bool(row["disabled"]) or as_utc(row["session_created_at"]) < as_utc(
        row["tokens_valid_after"]
    ):
        return "Session revoked"
    if as_utc(row["session_expires_at"]) <= now or as_utc(row["expires_at"]) <= now:
        return "Session expired"
    return None


# The access token beside a refresh token: issued by the caller, who knows the signing key.
IssueAccess = Callable[[str, str, datetime], Issued | None]


def access_issuer(tokens: TokenService) -> IssueAccess:
    def issue(username: str, session_id: str, not_after: datetime) -> Issued:
        return tokens.issue_for_session(username, sid=session_id, not_after=not_after.timestamp())

    return issue


def no_access(_username: str, _session_id: str, _not_after: datetime) -> None:
    """Browser sessions carry no access token: the cookie is the credential."""
    return None


async def _insert_token(
    tx: Transaction,
    *,
    token: str,
    session_id: str,
    now: datetime,
    expires_at: datetime,
    access: Issued | None,
) -> None:
    await tx.execute(
        "INSERT INTO refresh_tokens (token_hash, session_id, created_at, expires_at, used_at, "
        "access_jti, access_iat_us, access_exp) VALUES (:hash, :session_id, :now, :expires_at, "
        "NULL, :jti, :iat_us, :exp)",
        {
            "hash": opaque.digest(token),
            "session_id": session_id,
            "now": now,
            "expires_at": expires_at,
            "jti": access.jti if access else None,
            "iat_us": access.iat_us if access else None,
            "exp": access.exp if access else None,
        },
    )


async def start_session(
    db: Database,
    *,
    user: User,
    kind: Kind,
    lifetimes: Lifetimes,
    issue_access: IssueAccess,
    user_agent: str | None,
    client_address: str | None,
) -> Grant:
    """A new session for `user` with its first refresh token (or cookie token)."""
    now = datetime.now(UTC)
    session_id = str(uuid.uuid4())
    session_expires = now + lifetimes.max_age
    token = opaque.new_refresh_token() if kind == "token" else opaque.new_browser_token()
    token_expires = min(now + lifetimes.idle, session_expires)
    access = issue_access(user.username, session_id, session_expires)
    async with db.transaction() as tx:
        await tx.execute(
            "INSERT INTO sessions (id, user_id, kind, created_at, last_used_at, expires_at, "
            "revoked_at, user_agent, client_address) VALUES (:id, :user_id, :kind, :now, :now, "
            ":expires_at, NULL, :user_agent, :client_address)",
            {
                "id": session_id,
                "user_id": user.id,
                "kind": kind,
                "now": now,
                "expires_at": session_expires,
                "user_agent": (user_agent or "")[:MAX_USER_AGENT] or None,
                "client_address": (client_address or "")[:MAX_ADDRESS] or None,
            },
        )
        await _insert_token(
            tx,
            token=token,
            session_id=session_id,
            now=now,
            expires_at=lifetimes.idle + now,
            access=access,
        )
    record = TokenRecord(
        token_hash=opaque.digest(token),
        session_id=session_id,
        kind=kind,
        user_id=user.id,
        username=user.username,
        session_created_at=now,
        session_expires_at=session_expires,
        session_revoked_at=None,
        created_at=now,
        expires_at=now + lifetimes.idle,
        used_at=None,
        access_jti=access.jti if access else None,
        access_iat_us=access.iat_us if access else None,
        access_exp=access.exp if access else None,
    )
    return Grant(session_id, user.username, token, token_expires, access, record)


async def find_token(db: Database, token: str) -> TokenRecord | None:
    row = await db.fetch_one(_RECORD, {"hash": opaque.digest(token)})
    return _record(row) if row else None


async def rotate(
    db: Database,
    *,
    token: str,
    kind: Kind,
    lifetimes: Lifetimes,
    issue_access: IssueAccess,
    successor_key: bytes,
    reissue: Callable[[TokenRecord], Issued | None],
) -> Grant:
    """Exchange `token` for its successor, once.

    A used-up token within the grace window answers with the successor it already produced;
    after it, the session is revoked (and `TokenReused` raised once that is committed).
    """
    now = datetime.now(UTC)
    presented = opaque.digest(token)
    following = opaque.successor(token, key=successor_key)
    invalid = "Invalid refresh token" if kind == "token" else "Invalid session"
    async with db.transaction() as tx:
        row = await tx.fetch_one(_RECORD, {"hash": presented})
        if row is None or row["kind"] != kind:
            raise Unauthorized(invalid)
        problem = _usable(row, now)
        if row["used_at"] is None:
            if problem is not None:
                raise Unauthorized(problem)
            # Exactly one request exchanges a token; a concurrent one finds it used below.
            claimed = await tx.execute(
                "UPDATE refresh_tokens SET used_at = :now "
                "WHERE token_hash = :hash AND used_at IS NULL",
                {"now": now, "hash": presented},
            )
            if claimed:
                return await _exchange(
                    tx,
                    row,
                    token=following,
                    now=now,
                    lifetimes=lifetimes,
                    issue=issue_access,
                )
            row = await tx.fetch_one(_RECORD, {"hash": presented})
            if row is None:
                raise Unauthorized(invalid)
            problem = _usable(row, now)
        if problem is not None:
            raise Unauthorized(problem)
        if now - as_utc(row["used_at"]) <= lifetimes.grace:
            successor_row = await tx.fetch_one(_RECORD, {"hash": opaque.digest(following)})
            if successor_row is not None:
                record = _record(successor_row)
                return Grant(
                    record.session_id,
                    record.username,
                    following,
                    record.refresh_expires_at(),
                    reissue(record),
                    record,
                )
        session_id = str(row["session_id"])
        await _revoke(tx, db, session_id=session_id, now=now)
    raise TokenReused(session_id)


async def _exchange(
    tx: Transaction,
    row: Row,
    *,
    token: str,
    now: datetime,
    lifetimes: Lifetimes,
    issue: IssueAccess,
) -> Grant:
    """Issue `token` as the successor of the (just used-up) token of `row`."""
    # Guarded by the session's own row, so a revocation committed meanwhile wins.
    live = await tx.fetch_one(
        "UPDATE sessions SET last_used_at = :now WHERE id = :id AND revoked_at IS NULL "
        "RETURNING id",
        {"now": now, "id": row["session_id"]},
    )
    if live is None:
        raise Unauthorized("Session revoked")
    session_expires = as_utc(row["session_expires_at"])
    access = issue(row["username"], row["session_id"], session_expires)
    await _insert_token(
        tx,
        token=token,
        session_id=row["session_id"],
        now=now,
        expires_at=now + lifetimes.idle,
        access=access,
    )
    if row["kind"] == "browser":
        # Other processes may hold the used-up cookie token as unused: they drop it, so
        # that a copy presented there is found used (and judged) too.
        await record_change(
            tx,
            collection="sessions",
            op="update",
            resource_id=row["session_id"],
            data=None,
        )
    record = TokenRecord(
        token_hash=opaque.digest(token),
        session_id=row["session_id"],
        kind=row["kind"],
        user_id=row["user_id"],
        username=row["username"],
        session_created_at=as_utc(row["session_created_at"]),
        session_expires_at=session_expires,
        session_revoked_at=None,
        created_at=now,
        expires_at=now + lifetimes.idle,
        used_at=None,
        access_jti=access.jti if access else None,
        access_iat_us=access.iat_us if access else None,
        access_exp=access.exp if access else None,
    )
    return Grant(
        record.session_id, record.username, token, record.refresh_expires_at(), access, record
    )


async def _revoke(
    tx: Transaction, db: Database, *, session_id: str, now: datetime, user_id: str | None = None
) -> bool:
    """Mark the session revoked and tell every process (through the change log)."""
    guard = " AND user_id = :user_id" if user_id is not None else ""
    row = await tx.fetch_one(
        f"UPDATE sessions SET revoked_at = :now WHERE id = :id AND revoked_at IS NULL{guard} "
        "RETURNING id",
        {"now": now, "id": session_id, **({"user_id": user_id} if user_id else {})},
    )
    if row is None:
        return False
    await record_change(
        tx,
        collection="sessions",
        op="delete",
        resource_id=session_id,
        data=None,
    )
    return True


async def revoke_session(db: Database, *, session_id: str, user_id: str | None = None) -> bool:
    """End one session (of `user_id`, when given); False when there was none still live."""
    async with db.transaction() as tx:
        return await _revoke(tx, db, session_id=session_id, now=datetime.now(UTC), user_id=user_id)


async def revoke_user_sessions(db: Database, *, user_id: str, keep: str | None = None) -> list[str]:
    """End every live session of the user (but `keep`); returns the ids ended."""
    now = datetime.now(UTC)
    async with db.transaction() as tx:
        rows = await tx.fetch_all(
            "SELECT id FROM sessions WHERE user_id = :user_id AND revoked_at IS NULL "
            "AND expires_at > :now",
            {"user_id": user_id, "now": now},
        )
        ended = []
        for row in rows:
            if row["id"] != keep and await _revoke(tx, db, session_id=row["id"], now=now):
                ended.append(row["id"])
    return ended


async def change_own_password(
    db: Database, *, user_id: str, password_hash: str, keep: str | None
) -> list[str]:
    """The user's new password, and the end of their other sessions, in one write."""
    now = datetime.now(UTC)
    async with db.transaction() as tx:
        rows = await tx.fetch_all(
            "UPDATE sessions SET revoked_at = :now WHERE user_id = :user_id "
            "AND revoked_at IS NULL AND id != :keep RETURNING id",
            {"now": now, "user_id": user_id, "keep": keep or ""},
        )
        await write_password(tx, user_id=user_id, password_hash=password_hash)
        ended = [str(r["id"]) for r in rows]
        for session_id in ended:
            await record_change(
                tx,
                collection="sessions",
                op="delete",
                resource_id=session_id,
                data=None,
            )
    return ended


async def list_sessions(db: Database, *, user_id: str | None, idle: timedelta) -> list[SessionInfo]:
    """Live sessions (of one user, or everyone's), newest first."""
    now = datetime.now(UTC)
    where = "s.revoked_at IS NULL AND s.expires_at > :now AND s.created_at >= u.tokens_valid_after"
    params: dict[str, object] = {"now": now, "idle_since": now - idle}
    if user_id is not None:
        where += " AND s.user_id = :user_id"
        params["user_id"] = user_id
    rows = await db.fetch_all(
        "SELECT s.id, u.username, s.kind, s.created_at, s.last_used_at, s.expires_at, "
        "s.user_agent, s.client_address FROM sessions s JOIN users u ON u.id = s.user_id "
        f"WHERE {where} AND u.disabled = :no AND EXISTS (SELECT 1 FROM refresh_tokens t "
        "WHERE t.session_id = s.id AND t.used_at IS NULL AND t.expires_at > :now) "
        "ORDER BY s.created_at DESC, s.id",
        {**params, "no": False},
    )
    return [
        SessionInfo(
            id=r["id"],
            username=r["username"],
            kind=r["kind"],
            created_at=as_utc(r["created_at"]),
            last_used_at=as_utc(r["last_used_at"]),
            expires_at=as_utc(r["expires_at"]),
            user_agent=r["user_agent"],
            client_address=r["client_address"],
        )
        for r in rows
    ]


def session_body(info: SessionInfo, *, current: str | None) -> dict[str, object]:
    return {
        "id": info.id,
        "username": info.username,
        "kind": info.kind,
        "created_at": iso(info.created_at),
        "last_used_at": iso(info.last_used_at),
        "expires_at": iso(info.expires_at),
        "user_agent": info.user_agent,
        "client_address": info.client_address,
        "current": info.id == current,
    }


async def session_owner(db: Database, *, session_id: str) -> str:
    """The user id a session belongs to, or `NotFound`."""
    row = await db.fetch_one("SELECT user_id FROM sessions WHERE id = :id", {"id": session_id})
    if row is None:
        raise NotFound("No such session")
    return str(row["user_id"])


async def revoked_since(db: Database, *, since: datetime) -> list[str]:
    rows = await db.fetch_all(
        "SELECT id FROM sessions WHERE revoked_at IS NOT NULL AND revoked_at > :since",
        {"since": since},
    )
    return [r["id"] for r in rows]


class SessionDirectory:
    """Revoked sessions and browser-session tokens per process: no database read per request.

    A revocation reaches every process through the change log (NOTIFY, then the poll); the
    set only needs to remember a session as long as an access token of it could still be
    valid, and browser tokens are cached until their session is revoked.
    """

    def __init__(self, db: Database, *, remember_seconds: float, cache_limit: int = 10_000):
        self._db = db
        self._remember = remember_seconds
        self._revoked: dict[str, float] = {}
        self._browser: dict[str, TokenRecord] = {}
        self._cache_limit = cache_limit
        self._generation = 0

    async def load(self) -> None:
        """Revocations recent enough to matter (call after the feed has started)."""
        since = datetime.now(UTC) - timedelta(seconds=self._remember)
        now = time.time()
        for session_id in await revoked_since(self._db, since=since):
            self._revoked.setdefault(session_id, now)

    def is_revoked(self, session_id: str) -> bool:
        return session_id in self._revoked

    def mark_revoked(self, session_id: str) -> None:
        """Refuse the session here at once (the change log tells the other processes)."""
        self._revoked.pop(session_id, None)  # to the end: the set is kept in the order heard
        self._revoked[session_id] = time.time()
        self._drop_browser(session_id)
        self._prune()

    def on_change(self, change: Change) -> None:
        if change.collection == "sessions" and change.op == "delete":
            self.mark_revoked(change.resource_id)
        elif change.collection == "sessions":
            self._drop_browser(change.resource_id)  # rotated: read it again
        elif change.collection == "users":
            self.forget_browsers()

    def forget_browsers(self) -> None:
        """A disabled user or a password change: reload browser tokens from the database."""
        self._generation += 1
        self._browser.clear()

    async def browser_token(self, token: str) -> TokenRecord | None:
        """The stored record of a browser-session cookie (cached)."""
        key = opaque.digest(token)
        record = self._browser.get(key)
        if record is not None:
            return record
        generation = self._generation
        record = await find_token(self._db, token)
        if record is not None and record.kind == "browser" and generation == self._generation:
            if len(self._browser) >= self._cache_limit:
                self._browser.clear()
            self._browser[key] = record
        return record if record is not None and record.kind == "browser" else None

    def remember_browser(self, record: TokenRecord) -> None:
        if len(self._browser) >= self._cache_limit:
            self._browser.clear()
        self._browser[record.token_hash] = record

    def forget_browser(self, token_hash: str) -> None:
        self._browser.pop(token_hash, None)

    def _drop_browser(self, session_id: str) -> None:
        for key in [k for k, r in self._browser.items() if r.session_id == session_id]:
            del self._browser[key]

    def _prune(self) -> None:
        # Insertion order is the order heard: the oldest entries are first.
        cutoff = time.time() - self._remember
        for session_id, heard in list(self._revoked.items()):
            if heard >= cutoff:
                break
            del self._revoked[session_id]
