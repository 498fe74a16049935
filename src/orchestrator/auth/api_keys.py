"""API keys for workers, agents and scripts: create, list, revoke, and the per-process directory.

A key acts as its user with that user's role (a read-only key only reads). It is stored as a
SHA-256 hash; the directory caches what a key stands for, so authenticating with a key costs
no database read after the first, and a revocation reaches it through the change log.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import structlog

from orchestrator.auth import opaque
from orchestrator.db import Database, DatabaseUnavailable, Row
from orchestrator.db.changelog import Change, record_change
from orchestrator.errors import NotFound, Unprocessable
from orchestrator.timestamps import as_utc, iso

log = structlog.get_logger(__name__)

MAX_NAME = 100
MIN_DAYS, MAX_DAYS, DEFAULT_DAYS = 1, 730, 90


@dataclass(frozen=True, slots=True)
class ApiKey:
    id: str
    name: str
    user_id: str
    username: str
    read_only: bool
    created_at: datetime
    expires_at: datetime
    last_used_at: datetime | None
    prefix: str


_SELECT = (
    "SELECT k.id, k.name, k.user_id, u.username, k.read_only, k.created_at, k.expires_at, "
    "k.last_used_at, k.prefix FROM api_keys k JOIN users u ON u.id = k.user_id"
)


def _key(row: Row) -> ApiKey:
    last_used = row["last_used_at"]
    return ApiKey(
        id=row["id"],
        name=row["name"],
        user_id=row["user_id"],
        username=row["username"],
        read_only=bool(row["read_only"]),
        created_at=as_utc(row["created_at"]),
        expires_at=as_utc(row["expires_at"]),
        last_used_at=as_utc(last_used) if last_used is not None else None,
        prefix=row["prefix"],
    )


def api_key_body(key: ApiKey) -> dict[str, object]:
    """A key as listings show it: never the secret."""
    return {
        "id": key.id,
        "name": key.name,
        "username": key.username,
        "read_only": key.read_only,
        "created_at": iso(key.created_at),
        "expires_at": iso(key.expires_at),
        "last_used_at": iso(key.last_used_at) if key.last_used_at is not None else None,
        "prefix": key.prefix,
    }


def check_new_key(*, name: str, expires_in_days: int) -> None:
    """The rules for a new key (the same for the API and the CLI)."""
    problems = []
    if not name.strip() or len(name) > MAX_NAME:
        problems.append({"field": "name", "reason": f"1 to {MAX_NAME} characters"})
    if not MIN_DAYS <= expires_in_days <= MAX_DAYS:
        problems.append(
            {
                "field": "expires_in_days",
                "reason": f"{MIN_DAYS} to {MAX_DAYS} (no key lives forever)",
            }
        )
    if problems:
        raise Unprocessable("Invalid API key", details=problems)


async def create_api_key(
    db: Database,
    *,
    user_id: str,
    username: str,
    name: str,
    read_only: bool,
    expires_in_days: int,
) -> tuple[ApiKey, str]:
    """A new key for the user; returns it with its secret (shown once, never stored)."""
    check_new_key(name=name, expires_in_days=expires_in_days)
    secret = opaque.new_api_key()
    now = datetime.now(UTC)
    key = ApiKey(
        id=str(uuid.uuid4()),
        name=name.strip(),
        user_id=user_id,
        username=username,
        read_only=read_only,
        created_at=now,
        expires_at=now + timedelta(days=expires_in_days),
        last_used_at=None,
        prefix=secret[: opaque.API_KEY_SHOWN],
    )
    async with db.transaction() as tx:
        await tx.execute(
            "INSERT INTO api_keys (id, user_id, name, key_hash, prefix, read_only, created_at, "
            "expires_at, last_used_at) VALUES (:id, :user_id, :name, :hash, :prefix, "
            ":read_only, :created_at, :expires_at, NULL)",
            {
                "id": key.id,
                "user_id": user_id,
                "name": key.name,
                "hash": opaque.digest(secret),
                "prefix": key.prefix,
                "read_only": read_only,
                "created_at": now,
                "expires_at": key.expires_at,
            },
        )
        await record_change(
            tx,
            collection="api_keys",
            op="create",
            resource_id=key.id,
            data=None,
        )
    return key, secret


async def list_api_keys(db: Database, *, user_id: str | None) -> list[ApiKey]:
    """Keys of one user (or everyone's), newest first; expired ones included until revoked."""
    if user_id is None:
        rows = await db.fetch_all(f"{_SELECT} ORDER BY k.created_at DESC, k.id")
    else:
        rows = await db.fetch_all(
            f"{_SELECT} WHERE k.user_id = :user_id ORDER BY k.created_at DESC, k.id",
            {"user_id": user_id},
        )
    return [_key(r) for r in rows]


async def get_api_key(db: Database, *, key_id: str) -> ApiKey | None:
    row = await db.fetch_one(f"{_SELECT} WHERE k.id = :id", {"id": key_id})
    return _key(row) if row else None


async def revoke_api_key(db: Database, *, key_id: str, user_id: str | None) -> None:
    """Delete the key (of `user_id`, when given) and tell every process; `NotFound` if none."""
    guard = " AND user_id = :user_id" if user_id is not None else ""
    async with db.transaction() as tx:
        row = await tx.fetch_one(
            f"DELETE FROM api_keys WHERE id = :id{guard} RETURNING id",
            {"id": key_id, **({"user_id": user_id} if user_id is not None else {})},
        )
        if row is None:
            raise NotFound("No such API key")
        await record_change(
            tx,
            collection="api_keys",
            op="delete",
            resource_id=key_id,
            data=None,
        )


async def find_api_key(db: Database, *, secret: str) -> ApiKey | None:
    row = await db.fetch_one(f"{_SELECT} WHERE k.key_hash = :hash", {"hash": opaque.digest(secret)})
    return _key(row) if row else None


class ApiKeyDirectory:
    """What each key stands for, per process, and when each key was last used.

    Keys are cached by their exact text, as verified access tokens are (`TokenService`), so a
    request with a known key costs one dict lookup: no checksum, no hash, no database. Any
    change to the keys (from any process, through the change log) empties the cache; the next
    request with a key reads it again. `last_used_at` is written at most once a minute per key
    and process, off the request's path.
    """

    def __init__(self, db: Database, *, cache_limit: int = 10_000) -> None:
        self._db = db
        self._keys: dict[str, ApiKey | None] = {}
        self._generation = 0
        self._cache_limit = cache_limit
        self._recorded: dict[str, int] = {}  # key id -> the minute (since the epoch) written
        self._writes: set[asyncio.Task[None]] = set()

    async def get(self, secret: str) -> ApiKey | None:
        """The key `secret` is, or None (malformed, unknown or revoked)."""
        try:
            return self._keys[secret]
        except KeyError:
            pass
        if not opaque.is_api_key(secret):
            return None  # not worth a lookup, nor a place in the cache
        generation = self._generation
        key = await find_api_key(self._db, secret=secret)
        if generation == self._generation:  # no change arrived while we were reading
            if len(self._keys) >= self._cache_limit:
                self._keys.clear()
            self._keys[secret] = key
        return key

    def known(self, secret: str) -> ApiKey | None:
        """The key if this process has it cached and it has not expired: no I/O."""
        key = self._keys.get(secret)
        if key is None or key.expires_at <= datetime.now(UTC):
            return None
        return key

    def forget(self) -> None:
        """Read every key again (this process revoked one; the change log tells the others)."""
        self._generation += 1
        self._keys.clear()

    def on_change(self, change: Change) -> None:
        if change.collection == "api_keys":
            self.forget()
            if change.op == "delete":
                self._recorded.pop(change.resource_id, None)

    def used(self, key: ApiKey, now: float) -> None:
        """Note a use at `now` (seconds since the epoch); the first in a new minute is written
        in the background."""
        minute = int(now // 60)
        if self._recorded.get(key.id) == minute:
            return
        self._recorded[key.id] = minute
        at = datetime.fromtimestamp(minute * 60, UTC)
        task = asyncio.create_task(self._write_use(key.id, at), name="api-key-last-used")
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def _write_use(self, key_id: str, minute: datetime) -> None:
        try:
            async with self._db.transaction() as tx:
                await tx.execute(
                    "UPDATE api_keys SET last_used_at = :minute WHERE id = :id "
                    "AND (last_used_at IS NULL OR last_used_at < :minute)",
                    {"minute": minute, "id": key_id},
                )
        except DatabaseUnavailable:
            self._recorded.pop(key_id, None)  # try again on the next use
            log.warning("api_key_last_used_not_written")

    async def settle(self) -> None:
        """Let the pending last-use writes finish (before keys are listed, or at shutdown)."""
        if self._writes:
            await asyncio.wait(set(self._writes), timeout=5)

    async def close(self) -> None:
        await self.settle()
