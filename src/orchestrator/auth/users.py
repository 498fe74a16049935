"""User accounts: queries, and the per-process directory the token check reads."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal, cast

import orjson

from orchestrator.auth.passwords import Passwords, Place
from orchestrator.db import ConstraintViolation, Database, Row, Transaction
from orchestrator.db.changelog import Change, record_change
from orchestrator.errors import Conflict, NotFound, Unprocessable
from orchestrator.timestamps import as_utc, iso

Role = Literal["admin", "member", "viewer", "worker"]
ROLES: tuple[Role, ...] = ("admin", "member", "viewer", "worker")
USERNAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,149}$"
USERNAME = re.compile(USERNAME_PATTERN)
MAX_USERNAME = 150
MAX_PASSWORD = 1024
MIN_PASSWORD = 8


@dataclass(frozen=True, slots=True)
class User:
    id: str
    username: str
    role: Role
    disabled: bool
    tokens_valid_after: datetime
    password_hash: str
    created_at: datetime


def username_key(username: str) -> str:
    return username.casefold()


def _user(row: Row) -> User:
    return User(
        id=row["id"],
        username=row["username"],
        role=cast(Role, row["role"]),
        disabled=bool(row["disabled"]),
        tokens_valid_after=as_utc(row["tokens_valid_after"]),
        password_hash=row["password_hash"],
        created_at=as_utc(row["created_at"]),
    )


_COLUMNS = "id, username, role, disabled, tokens_valid_after, password_hash, created_at"


_PASSWORD_RULE = {
    "field": "password",
    "reason": f"{MIN_PASSWORD} to {MAX_PASSWORD} characters",
}


def check_new_password(password: str) -> None:
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise Unprocessable("Invalid password", details=[_PASSWORD_RULE])


def check_new_credentials(*, username: str, password: str, role: str) -> None:
    problems = []
    if not USERNAME.fullmatch(username):  # `$` alone would let a final newline in
        problems.append(
            {"field": "username", "reason": "1 to 150 letters, digits, '.', '_', '@' or '-'"}
        )
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        problems.append(_PASSWORD_RULE)
    if role not in ROLES:
        problems.append({"field": "role", "reason": f"one of {', '.join(ROLES)}"})
    if problems:
        raise Unprocessable("Invalid user", details=problems)


async def get_user(db: Database, *, username: str) -> User | None:
    row = await db.fetch_one(
        f"SELECT {_COLUMNS} FROM users WHERE username_key = :key", {"key": username_key(username)}
    )
    return _user(row) if row else None


async def verify_credentials(
    db: Database,
    passwords: Passwords,
    *,
    username: str,
    password: str,
    place: Place | None = None,
) -> User | None:
    """The enabled user these credentials belong to, or None.

    Exactly one argon2 verification on every path: an unknown or disabled user is verified
    against the dummy hash, so a failure costs the same whatever its cause.
    """
    user = await get_user(db, username=username)
    candidate = user if user is not None and not user.disabled else None
    matched = await passwords.verify(
        candidate.password_hash if candidate is not None else None, password, place=place
    )
    return candidate if matched else None


def user_body(user: User) -> dict[str, object]:
    """A user as clients see it: never the hash."""
    return {
        "id": user.id,
        "username": user.username,
        "role": user.role,
        "disabled": user.disabled,
        "created_at": iso(user.created_at),
    }


async def list_users(db: Database) -> list[User]:
    rows = await db.fetch_all(f"SELECT {_COLUMNS} FROM users ORDER BY username_key")
    return [_user(r) for r in rows]


async def count_users(db: Database) -> int:
    row = await db.fetch_one("SELECT count(*) AS n FROM users")
    return int(row["n"]) if row else 0


async def create_user(db: Database, *, username: str, password_hash: str, role: Role) -> User:
    now = datetime.now(UTC)
    user_id = str(uuid.uuid4())
    user = User(user_id, username, role, False, now, password_hash, now)
    try:
        async with db.transaction() as tx:
            await tx.execute(
                "INSERT INTO users (id, username, username_key, password_hash, role, disabled, "
                "tokens_valid_after, created_at, updated_at) VALUES (:id, :username, :key, "
                ":hash, :role, :disabled, :now, :now, :now)",
                {
                    "id": user_id,
                    "username": username,
                    "key": username_key(username),
                    "hash": password_hash,
                    "role": role,
                    "disabled": False,
                    "now": now,
                },
            )
            await record_change(
                tx,
                collection="users",
                op="create",
                resource_id=user_id,
                data=_change_body(user),
            )
    except ConstraintViolation:
        raise Conflict(f"User {username!r} already exists") from None
    return user


def _change_body(user: User) -> bytes:
    """A user as the change log carries it: the client's view, never the hash."""
    return orjson.dumps(user_body(user), option=orjson.OPT_SORT_KEYS)


async def _update_user(
    db: Database,
    *,
    username: str,
    assignments: str,
    params: dict[str, object],
    revoke: bool,
) -> User:
    """Apply `assignments`; with `revoke`, also cut off every token and session so far."""
    now = datetime.now(UTC)
    sets = [a for a in (assignments, "tokens_valid_after = :now" if revoke else "") if a]
    async with db.transaction() as tx:
        row = await tx.fetch_one(
            f"UPDATE users SET {', '.join(sets)}, updated_at = :now "
            f"WHERE username_key = :key RETURNING {_COLUMNS}",
            {**params, "now": now, "key": username_key(username)},
        )
        if row is None:
            raise NotFound(f"No user {username!r}")
        user = _user(row)
        if revoke:
            # Access tokens are cut off by `tokens_valid_after`; their sessions end here too,
            # so that no refresh token or browser cookie of them works any more.
            await tx.execute(
                "UPDATE sessions SET revoked_at = :now "
                "WHERE user_id = :user_id AND revoked_at IS NULL",
                {"now": now, "user_id": user.id},
            )
        await record_change(
            tx,
            collection="users",
            op="update",
            resource_id=user.id,
            data=_change_body(user),
        )
    return user


async def set_password(db: Database, *, username: str, password_hash: str) -> User:
    """A new password; every token and session of the user ends."""
    return await _update_user(
        db,
        username=username,
        assignments="password_hash = :hash",
        params={"hash": password_hash},
        revoke=True,
    )


async def set_disabled(db: Database, *, username: str, disabled: bool) -> User:
    """Disable (ending every token and session) or enable a user."""
    return await _update_user(
        db,
        username=username,
        assignments="disabled = :disabled",
        params={"disabled": disabled},
        revoke=True,
    )


async def set_role(db: Database, *, username: str, role: Role) -> User:
    """A new role, effective on the user's next request (tokens stay valid)."""
    return await _update_user(
        db, username=username, assignments="role = :role", params={"role": role}, revoke=False
    )


async def update_user(
    db: Database, *, username: str, role: Role | None, disabled: bool | None
) -> User:
    """A new role and/or disabled state in one write; disabling (or enabling, as the CLI
    does) ends every token and session so far."""
    assignments: list[str] = []
    params: dict[str, object] = {}
    if role is not None:
        assignments.append("role = :role")
        params["role"] = role
    if disabled is not None:
        assignments.append("disabled = :disabled")
        params["disabled"] = disabled
    if not assignments:
        user = await get_user(db, username=username)
        if user is None:
            raise NotFound(f"No user {username!r}")
        return user
    return await _update_user(
        db,
        username=username,
        assignments=", ".join(assignments),
        params=params,
        revoke=disabled is not None,
    )


async def end_all_sessions(db: Database, *, username: str) -> User:
    """Cut off every access token, refresh token and browser session of the user."""
    return await _update_user(db, username=username, assignments="", params={}, revoke=True)


async def write_password(tx: Transaction, *, user_id: str, password_hash: str) -> User:
    """Store a new hash inside the caller's transaction (which decides what else ends)."""
    row = await tx.fetch_one(
        f"UPDATE users SET password_hash = :hash, updated_at = :now WHERE id = :id "
        f"RETURNING {_COLUMNS}",
        {"hash": password_hash, "now": datetime.now(UTC), "id": user_id},
    )
    if row is None:
        raise NotFound("No such user")
    user = _user(row)
    await record_change(
        tx,
        collection="users",
        op="update",
        resource_id=user.id,
        data=_change_body(user),
    )
    return user


async def get_user_by_id(db: Database, *, user_id: str) -> User | None:
    row = await db.fetch_one(f"SELECT {_COLUMNS} FROM users WHERE id = :id", {"id": user_id})
    return _user(row) if row else None


class UserDirectory:
    """Users' state per process, so a token check costs no database round trip.

    Any change to the users collection (seen through the change feed, from any process)
    empties it; the next check reloads that user.
    """

    def __init__(self, db: Database) -> None:
        self._db = db
        self._users: dict[str, User | None] = {}
        self._generation = 0

    async def get(self, username: str) -> User | None:
        key = username_key(username)
        try:
            return self._users[key]
        except KeyError:
            pass
        generation = self._generation
        user = await get_user(self._db, username=username)
        if generation == self._generation:  # no change arrived while we were reading
            self._users[key] = user
        return user

    def forget(self) -> None:
        """Read users again (this process changed one; the change log tells the others)."""
        self._generation += 1
        self._users.clear()

    def on_change(self, change: Change) -> None:
        if change.collection == "users":
            self.forget()
