"""The database port: reads and write transactions that never stall the event loop.

SQLite runs its statements on dedicated threads (one writer, a few readers), each with its own
connection, so a write waiting for the file lock or a slow disk only parks a coroutine.
PostgreSQL runs on an asyncpg pool. Both take SQL with `:name` parameters.
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal, Protocol, TypeVar

import asyncpg

Row = Mapping[str, Any]
Params = Mapping[str, Any] | None
Dialect = Literal["sqlite", "postgresql"]
T = TypeVar("T")

# Postgres errors that mean "the server is gone or not answering", as opposed to a bad statement.
_PG_UNAVAILABLE = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
)


class DatabaseUnavailable(Exception):
    """The database did not answer in time or could not be reached."""


class ConstraintViolation(Exception):
    """A write broke a unique or check constraint."""


class Transaction(Protocol):
    """Statements inside one write transaction."""

    async def fetch_one(self, sql: str, params: Params = None) -> Row | None: ...
    async def fetch_all(self, sql: str, params: Params = None) -> list[Row]: ...
    async def execute(self, sql: str, params: Params = None) -> int: ...


class Database(Protocol):
    """What the domain packages need from a backend."""

    dialect: Dialect

    async def fetch_one(self, sql: str, params: Params = None) -> Row | None: ...
    async def fetch_all(self, sql: str, params: Params = None) -> list[Row]: ...
    def transaction(self) -> AbstractAsyncContextManager[Transaction]: ...
    def after_commit(self, callback: Callable[[], None]) -> None: ...
    async def ping(self) -> None: ...
    async def close(self) -> None: ...


# A real read of our own schema: `SELECT 1` would not even touch a SQLite file.
_PING = "SELECT revision FROM revision_counter WHERE id = 1"

# --------------------------------------------------------------------------- SQLite


def _to_iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def _sqlite_connect(path: str, *, busy_timeout_ms: int) -> sqlite3.Connection:
    conn = sqlite3.connect(
        path,
        isolation_level=None,  # we issue BEGIN/COMMIT ourselves
        check_same_thread=True,
        detect_types=0,
        timeout=busy_timeout_ms / 1000,
    )
    conn.row_factory = sqlite3.Row
    # Switching to WAL takes a lock (and can fail "locked" under concurrent writers): only the
    # first connection to a new file needs to, and the mode is then kept in the file.
    if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
        conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
    return conn


def _adapt(params: Params) -> Mapping[str, Any]:
    if not params:
        return {}
    if any(isinstance(v, datetime) for v in params.values()):
        return {k: _to_iso(v) if isinstance(v, datetime) else v for k, v in params.items()}
    return params


class _SqliteTransaction:
    def __init__(self, db: SqliteDatabase) -> None:
        self._db = db

    async def fetch_one(self, sql: str, params: Params = None) -> Row | None:
        return await self._db._on_writer(lambda c: c.execute(sql, _adapt(params)).fetchone())

    async def fetch_all(self, sql: str, params: Params = None) -> list[Row]:
        return await self._db._on_writer(lambda c: c.execute(sql, _adapt(params)).fetchall())

    async def execute(self, sql: str, params: Params = None) -> int:
        return await self._db._on_writer(lambda c: c.execute(sql, _adapt(params)).rowcount)


class SqliteDatabase:
    """SQLite in WAL mode: one writer thread, a small pool of reader threads."""

    dialect: Dialect = "sqlite"

    def __init__(self, path: Path, *, readers: int = 2, busy_timeout_ms: int = 30_000) -> None:
        self.path = path
        self._busy_timeout_ms = busy_timeout_ms
        self._local = threading.local()
        self._writer = ThreadPoolExecutor(1, "sqlite-writer", initializer=self._open_conn)
        self._readers = ThreadPoolExecutor(readers, "sqlite-reader", initializer=self._open_conn)
        self._write_lock = asyncio.Lock()
        self._after_commit: list[Callable[[], None]] = []
        self._closed = False

    def _open_conn(self) -> None:
        self._local.conn = _sqlite_connect(str(self.path), busy_timeout_ms=self._busy_timeout_ms)

    async def _run(self, pool: ThreadPoolExecutor, fn: Callable[[sqlite3.Connection], T]) -> T:
        def call() -> T:
            return fn(self._local.conn)

        try:
            return await asyncio.get_running_loop().run_in_executor(pool, call)
        except sqlite3.IntegrityError as exc:
            raise ConstraintViolation(str(exc)) from exc
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc) or "unable to open" in str(exc) or "disk I/O" in str(exc):
                raise DatabaseUnavailable(str(exc)) from exc
            raise

    def _on_writer(self, fn: Callable[[sqlite3.Connection], T]) -> Awaitable[T]:
        return self._run(self._writer, fn)

    async def fetch_one(self, sql: str, params: Params = None) -> Row | None:
        return await self._run(self._readers, lambda c: c.execute(sql, _adapt(params)).fetchone())

    async def fetch_all(self, sql: str, params: Params = None) -> list[Row]:
        return await self._run(self._readers, lambda c: c.execute(sql, _adapt(params)).fetchall())

    def after_commit(self, callback: Callable[[], None]) -> None:
        self._after_commit.append(callback)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        # One in-process writer at a time; BEGIN IMMEDIATE (with busy_timeout) orders us
        # against other processes, so a concurrent write waits instead of failing "locked".
        async with self._write_lock:
            await self._on_writer(lambda c: c.execute("BEGIN IMMEDIATE"))
            try:
                yield _SqliteTransaction(self)
            except BaseException:
                await asyncio.shield(self._on_writer(lambda c: c.execute("ROLLBACK")))
                raise
            await asyncio.shield(self._on_writer(lambda c: c.execute("COMMIT")))
        for callback in self._after_commit:
            callback()

    async def ping(self) -> None:
        await self.fetch_one(_PING)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True

        def close_conn() -> None:
            conn = getattr(self._local, "conn", None)
            if conn is not None:
                conn.close()

        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._writer, close_conn)
        self._writer.shutdown(wait=True)
        self._readers.shutdown(wait=True)


# ----------------------------------------------------------------------- PostgreSQL

_PARAM = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")


@lru_cache(maxsize=1024)
def _to_numbered(sql: str) -> tuple[str, tuple[str, ...]]:
    """Rewrite `:name` parameters as asyncpg's `$n`, remembering their order."""
    names: list[str] = []

    def number(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in names:
            names.append(name)
        return f"${names.index(name) + 1}"

    return _PARAM.sub(number, sql), tuple(names)


def _args(sql: str, params: Params) -> tuple[str, Sequence[Any]]:
    text, names = _to_numbered(sql)
    if not names:
        return text, ()
    assert params is not None, f"statement needs parameters {names}"
    return text, [params[name] for name in names]


_PG_CONSTRAINT = asyncpg.IntegrityConstraintViolationError


class _PgTransaction:
    def __init__(self, conn: Any, timeout: float) -> None:
        self._conn = conn
        self._timeout = timeout

    async def fetch_one(self, sql: str, params: Params = None) -> Row | None:
        text, args = _args(sql, params)
        try:
            row: Row | None = await self._conn.fetchrow(text, *args, timeout=self._timeout)
        except _PG_CONSTRAINT as exc:
            raise ConstraintViolation(str(exc)) from exc
        return row

    async def fetch_all(self, sql: str, params: Params = None) -> list[Row]:
        text, args = _args(sql, params)
        try:
            rows: list[Row] = await self._conn.fetch(text, *args, timeout=self._timeout)
        except _PG_CONSTRAINT as exc:
            raise ConstraintViolation(str(exc)) from exc
        return rows

    async def execute(self, sql: str, params: Params = None) -> int:
        text, args = _args(sql, params)
        try:
            status: str = await self._conn.execute(text, *args, timeout=self._timeout)
        except _PG_CONSTRAINT as exc:
            raise ConstraintViolation(str(exc)) from exc
        last = status.rsplit(" ", 1)[-1]
        return int(last) if last.isdigit() else 0


class PostgresDatabase:
    """PostgreSQL through an asyncpg pool; every call is bounded by a timeout."""

    dialect: Dialect = "postgresql"

    def __init__(self, dsn: str, *, timeout: float, min_size: int = 1, max_size: int = 10) -> None:
        self.dsn = dsn
        self.timeout = timeout
        self._min_size = min_size
        self._max_size = max_size
        self._pool: asyncpg.Pool[Any] | None = None
        self._pool_lock = asyncio.Lock()
        self._after_commit: list[Callable[[], None]] = []

    async def _get_pool(self) -> asyncpg.Pool[Any]:
        if self._pool is not None:
            return self._pool
        async with self._pool_lock:
            if self._pool is None:
                try:
                    self._pool = await asyncpg.create_pool(
                        self.dsn,
                        min_size=0,
                        max_size=self._max_size,
                        timeout=self.timeout,
                        command_timeout=self.timeout,
                        max_inactive_connection_lifetime=60,
                    )
                except _PG_UNAVAILABLE as exc:
                    raise DatabaseUnavailable(type(exc).__name__) from exc
        return self._pool

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[Any]:
        pool = await self._get_pool()
        try:
            async with pool.acquire(timeout=self.timeout) as conn:
                yield conn
        except _PG_UNAVAILABLE as exc:
            raise DatabaseUnavailable(type(exc).__name__) from exc

    async def fetch_one(self, sql: str, params: Params = None) -> Row | None:
        async with self._connection() as conn:
            return await _PgTransaction(conn, self.timeout).fetch_one(sql, params)

    async def fetch_all(self, sql: str, params: Params = None) -> list[Row]:
        async with self._connection() as conn:
            return await _PgTransaction(conn, self.timeout).fetch_all(sql, params)

    def after_commit(self, callback: Callable[[], None]) -> None:
        self._after_commit.append(callback)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        async with self._connection() as conn:
            try:
                async with conn.transaction():
                    yield _PgTransaction(conn, self.timeout)
            except _PG_UNAVAILABLE as exc:
                raise DatabaseUnavailable(type(exc).__name__) from exc
        for callback in self._after_commit:
            callback()

    async def ping(self) -> None:
        await self.fetch_one(_PING)

    async def listen(
        self, channel: str, callback: Callable[[str], None]
    ) -> asyncpg.Connection[Any]:
        """A dedicated connection that calls `callback(payload)` on every NOTIFY."""
        conn: asyncpg.Connection[Any] = await asyncio.wait_for(
            asyncpg.connect(self.dsn), timeout=self.timeout
        )
        try:
            await conn.add_listener(channel, lambda _c, _pid, _ch, payload: callback(payload))
        except BaseException:
            conn.terminate()
            raise
        return conn

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None


# ------------------------------------------------------------------------- factory


def postgres_dsn(url: str) -> str:
    """An asyncpg DSN from a SQLAlchemy-style URL (`postgresql+asyncpg://…`)."""
    scheme, rest = url.split("://", 1)
    return f"postgresql://{rest}" if scheme.startswith("postgres") else url


def sqlite_path(url: str) -> Path:
    """The file of a `sqlite:///relative` or `sqlite:////absolute` URL."""
    path = url.split(":///", 1)[1].split("?", 1)[0]
    return Path(path or "orchestrator.db")


def open_database(url: str, *, timeout: float) -> SqliteDatabase | PostgresDatabase:
    """The backend for a database URL."""
    scheme = url.split("://", 1)[0]
    if scheme.startswith("sqlite"):
        path = sqlite_path(url)
        path.parent.mkdir(parents=True, exist_ok=True)
        return SqliteDatabase(path)
    if scheme.startswith("postgres"):
        return PostgresDatabase(postgres_dsn(url), timeout=timeout)
    raise ValueError(f"unsupported database URL scheme {scheme!r}")
