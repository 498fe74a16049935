"""The database port: reads and write transactions that never stall the event loop.

SQLite runs writes and one-row reads on the event loop's own connections, which never wait
for a lock there (a write waiting for another process's lock retries asynchronously), and
lists and checkpoints on reader threads; see `SqliteDatabase`. PostgreSQL runs on an asyncpg
pool. Both take SQL with `:name` parameters.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import queue
import re
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal, NoReturn, Protocol, TypeVar

import asyncpg
import structlog

from orchestrator.db.notifier import Listening, LocalChannels, LocalListening, Notified
from orchestrator.faults import NO_FAULTS, Faults

Row = Mapping[str, Any]
Params = Mapping[str, Any] | None
Dialect = Literal["sqlite", "postgresql"]
T = TypeVar("T")
log = structlog.get_logger(__name__)

# Postgres errors that mean "the server is gone or not answering", as opposed to a bad statement.
_PG_UNAVAILABLE = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    # A connection interrupted while the server went away (in a restart, one being opened)
    # can be left in a state no statement may use: the server is as good as gone for it.
    asyncpg.InternalClientError,
)


class DatabaseUnavailable(Exception):
    """The database did not answer in time or could not be reached."""


class ConstraintViolation(Exception):
    """A write broke a unique or check constraint."""


class Transaction(Protocol):
    """Statements inside one write transaction."""

    dialect: Dialect

    async def fetch_one(self, sql: str, params: Params = None) -> Row | None: ...
    async def fetch_all(self, sql: str, params: Params = None) -> list[Row]: ...
    async def execute(self, sql: str, params: Params = None) -> int: ...
    async def notify(self, channel: str, payload: str) -> None:
        """Send `payload` to the listeners of `channel` when (and only if) this commits."""

    def notified(self, channel: str, payload: str) -> None:
        """`notify` for a statement that sent its NOTIFY itself (PostgreSQL's `pg_notify` in
        its SQL, saving a round trip): this process's listeners get it at commit."""

    def savepoint(self) -> AbstractAsyncContextManager[None]:
        """A block whose statements are undone, and their row locks released, when it raises
        (the exception goes on); the transaction itself goes on either way."""


class Database(Protocol):
    """What the domain packages need from a backend."""

    dialect: Dialect
    faults: Faults

    async def fetch_one(self, sql: str, params: Params = None) -> Row | None: ...
    async def fetch_all(self, sql: str, params: Params = None) -> list[Row]: ...
    def transaction(self) -> AbstractAsyncContextManager[Transaction]: ...
    async def listen(self, channel: str, callback: Notified) -> Listening:
        """Call `callback` with each payload committed to `channel`, from any process."""

    async def ping(self) -> None: ...
    async def close(self) -> None: ...


# How often an idle LISTEN connection is asked whether it still works.
LISTEN_CHECK_SECONDS = 15.0

# A real read of our own schema: `SELECT 1` would not even touch a SQLite file.
_PING = "SELECT revision FROM revision_counter WHERE id = 1"

# --------------------------------------------------------------------------- SQLite


def _to_iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def _checkpoint(conn: sqlite3.Connection) -> None:
    # PASSIVE: copies what no reader still needs, and never waits for anyone.
    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()


def _sync_file(path: str) -> None:
    """fdatasync `path`, if it exists. (An fd of our own on the log is safe to close: SQLite
    locks the database and shared-memory files, never the log, so no lock of its goes.)"""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return
    try:
        os.fdatasync(fd)
    finally:
        os.close(fd)


def _busy(exc: Exception) -> bool:
    return "locked" in str(exc) or "busy" in str(exc)


def _unavailable(exc: sqlite3.OperationalError) -> bool:
    text = str(exc)
    return "locked" in text or "unable to open" in text or "disk I/O" in text


def _sqlite_connect(
    path: str, *, busy_timeout_ms: int, same_thread: bool = True
) -> sqlite3.Connection:
    conn = sqlite3.connect(
        path,
        isolation_level=None,  # we issue BEGIN/COMMIT ourselves
        check_same_thread=same_thread,
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
    for value in params.values():
        if isinstance(value, datetime):
            return {k: _to_iso(v) if isinstance(v, datetime) else v for k, v in params.items()}
    return params


class _SqliteTransaction:
    """Statements of one write transaction, run on the event loop's writer connection."""

    dialect: Dialect = "sqlite"

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self.notes: list[tuple[str, str]] = []

    # `try` rather than `with _sqlite_errors()`: these run several times in every write, and
    # a generator-based context manager costs more than the statement's own Python work.
    async def fetch_one(self, sql: str, params: Params = None) -> Row | None:
        try:
            return self._conn.execute(sql, _adapt(params)).fetchone()  # type: ignore[no-any-return]
        except sqlite3.Error as exc:
            _raise_as_port_error(exc)

    async def fetch_all(self, sql: str, params: Params = None) -> list[Row]:
        try:
            return self._conn.execute(sql, _adapt(params)).fetchall()
        except sqlite3.Error as exc:
            _raise_as_port_error(exc)

    async def execute(self, sql: str, params: Params = None) -> int:
        try:
            return self._conn.execute(sql, _adapt(params)).rowcount
        except sqlite3.Error as exc:
            _raise_as_port_error(exc)

    async def notify(self, channel: str, payload: str) -> None:
        # SQLite has no notifications: other processes find commits by polling.
        self.notes.append((channel, payload))

    def notified(self, channel: str, payload: str) -> None:
        self.notes.append((channel, payload))

    @asynccontextmanager
    async def savepoint(self) -> AsyncIterator[None]:
        await self.execute("SAVEPOINT block")
        try:
            yield
        except BaseException:
            await self.execute("ROLLBACK TO block")
            await self.execute("RELEASE block")
            raise
        await self.execute("RELEASE block")


def _raise_as_port_error(exc: sqlite3.Error) -> NoReturn:
    """Raise `exc` as `_sqlite_errors` would: as the port's error, or as it is."""
    if isinstance(exc, sqlite3.IntegrityError):
        raise ConstraintViolation(str(exc)) from exc
    if isinstance(exc, sqlite3.OperationalError) and _unavailable(exc):
        raise DatabaseUnavailable(str(exc)) from exc
    raise exc


@contextlib.contextmanager
def _sqlite_errors() -> Iterator[None]:
    """SQLite's errors as the port's: constraint violations, and an unusable database."""
    try:
        yield
    except sqlite3.IntegrityError as exc:
        raise ConstraintViolation(str(exc)) from exc
    except sqlite3.OperationalError as exc:
        if _unavailable(exc):
            raise DatabaseUnavailable(str(exc)) from exc
        raise


class _SqliteThreads:
    """Threads that each own one connection and run the calls put on their shared queue.

    Cheaper per call than `run_in_executor` (which chains a concurrent Future to an asyncio
    one): the thread hands the outcome straight to the caller's future with
    `call_soon_threadsafe`. They read lists (which can be long) and run checkpoints (which
    write back and sync the file), the work too slow for the event loop.
    """

    def __init__(self, count: int, name: str, connect: Callable[[], sqlite3.Connection]) -> None:
        self._connect = connect
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._stopped = False
        self._threads = [
            threading.Thread(target=self._work, name=f"{name}-{i}", daemon=True)
            for i in range(count)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, fn: Callable[[sqlite3.Connection], T]) -> asyncio.Future[T]:
        if self._stopped:
            raise RuntimeError("the database is closed")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._jobs.put((fn, loop, future))
        return future

    def _work(self) -> None:
        conn: sqlite3.Connection | None = None
        try:
            while (job := self._jobs.get()) is not None:
                fn, loop, future = job
                try:
                    if conn is None:  # opened here: a connection belongs to its thread
                        conn = self._connect()
                    outcome: tuple[Any, BaseException | None] = (fn(conn), None)
                except BaseException as exc:
                    outcome = (None, exc)
                with contextlib.suppress(RuntimeError):  # the loop has closed meanwhile
                    loop.call_soon_threadsafe(_settle, future, *outcome)
        finally:
            if conn is not None:
                conn.close()

    def shutdown(self) -> None:
        """Finish the queued calls, close the connections and end the threads."""
        self._stopped = True
        for _ in self._threads:
            self._jobs.put(None)
        for thread in self._threads:
            thread.join()


_Job = tuple[Callable[[sqlite3.Connection], Any], asyncio.AbstractEventLoop, "asyncio.Future[Any]"]


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.cancelled():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


# With the writer's automatic checkpoints off, a checkpoint runs on a reader thread after this
# many committed writes.
CHECKPOINT_EVERY_WRITES = 500
# Most writes one group commit holds (see `SqliteDatabase.transaction`).
GROUP_COMMIT_MAX = 64
# Writers that commit at once, without waiting a turn of the loop for others to join, after a
# writer that waited and found none: one at a time, waiting costs each write a turn of the loop
# (7% more CPU for a lone client's creates), so it is only tried again now and then.
COMMIT_AT_ONCE_AFTER_A_LONE_WRITER = 8


class _Group:
    """Writes done in the writer's open transaction, committed together."""

    __slots__ = ("commit_scheduled", "committed", "members")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.members = 0
        self.commit_scheduled = False
        self.committed: asyncio.Future[None] = loop.create_future()

    def fail(self, error: Exception) -> None:
        """Fail each writer of the group with `error`, which each raises itself (retrieved
        here, so that a group no writer waits for any more is not reported as unhandled)."""
        self.committed.set_exception(error)
        self.committed.exception()


class SqliteDatabase:
    """SQLite in WAL mode: writes and one-row reads on the event loop, lists on reader threads.

    A statement of ours is a few microseconds of SQLite work, while handing it to a thread and
    back cost 45-100 µs of CPU (queue, wake-up, GIL hand-off, loop wake-up): five such hops
    were most of the cost of creating a task. So the event loop runs them itself, on two
    connections of its own, and never waits there for a lock: a write transaction starts with
    `BEGIN IMMEDIATE` that does not wait (busy_timeout 0) and is retried asynchronously until
    the busy timeout, so another process holding the write lock delays the write, not the
    loop; a one-row read that SQLite would make wait goes to a reader thread. The writer's
    WAL checkpoints, which write back and sync the database file, run on a reader thread too.
    """

    dialect: Dialect = "sqlite"

    def __init__(self, path: Path, *, readers: int = 2, busy_timeout_ms: int = 30_000) -> None:
        self.path = path
        self._busy_timeout_ms = busy_timeout_ms
        self._readers = _SqliteThreads(readers, "sqlite-reader", self._connect)
        self._writer_conn: sqlite3.Connection | None = None
        self._writes_since_checkpoint = 0
        self._checkpointing: asyncio.Task[None] | None = None
        self._inline = threading.local()  # each calling thread's own connection for fetch_one
        self._inline_conns: list[sqlite3.Connection] = []
        self._write_lock = asyncio.Lock()
        self._queued = 0  # writers waiting for the write lock
        self._group: _Group | None = None  # blocks done in the open transaction, uncommitted
        self._committer: asyncio.Task[None] | None = None
        self._commit_at_once = 0  # writers still to commit without waiting for company
        self._log_path = f"{path}-wal"
        self._channels = LocalChannels()
        self._closed = False
        self.faults = NO_FAULTS

    def _connect(self) -> sqlite3.Connection:
        return _sqlite_connect(str(self.path), busy_timeout_ms=self._busy_timeout_ms)

    async def _run(self, pool: _SqliteThreads, fn: Callable[[sqlite3.Connection], T]) -> T:
        with _sqlite_errors():
            return await pool.submit(fn)

    async def fetch_one(self, sql: str, params: Params = None) -> Row | None:
        """A one-row read on the caller's (event loop's) own connection; one that SQLite would
        make wait (busy_timeout 0 here) goes to a reader thread instead. See the class."""
        try:
            conn = self._inline_connection()
            return conn.execute(sql, _adapt(params)).fetchone()  # type: ignore[no-any-return]
        except sqlite3.OperationalError as exc:
            if not _busy(exc):
                if _unavailable(exc):
                    raise DatabaseUnavailable(str(exc)) from exc
                raise
        return await self._run(self._readers, lambda c: c.execute(sql, _adapt(params)).fetchone())

    def _inline_connection(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._inline, "conn", None)
        if conn is None:
            if self._closed:
                raise RuntimeError("the database is closed")
            conn = _sqlite_connect(str(self.path), busy_timeout_ms=0, same_thread=False)
            self._inline.conn = conn
            self._inline_conns.append(conn)
        return conn

    async def fetch_all(self, sql: str, params: Params = None) -> list[Row]:
        # Lists can be long: they are read on a reader thread, off the event loop.
        return await self._run(self._readers, lambda c: c.execute(sql, _adapt(params)).fetchall())

    async def listen(self, channel: str, callback: Notified) -> Listening:
        return LocalListening(self._channels, channel, callback)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        """One writer's block at a time; `BEGIN IMMEDIATE` orders us against other processes.

        Group commit: a block's work stays in the open transaction until the event loop's next
        turn, or until the writers waiting for the lock are done, and the writers that come
        meanwhile run theirs in the same transaction, each in a savepoint of its own (a block
        that fails undoes only its own statements). Then one commit takes them all (at most
        `GROUP_COMMIT_MAX`), and each block returns once it is done: nothing is acknowledged
        before its commit. One commit writes the log's pages once for many writes instead of
        once per write. Writers that come one at a time mostly commit at once (see
        `COMMIT_AT_ONCE_AFTER_A_LONE_WRITER`).
        """
        self._queued += 1
        try:
            await self._write_lock.acquire()
        finally:
            self._queued -= 1
        try:
            group = self._group
            if group is None:
                conn = await self._begin()
            else:
                conn = self._writer_connection()
                with _sqlite_errors():
                    conn.execute("SAVEPOINT member")
            tx = _SqliteTransaction(conn)
            try:
                yield tx
                self.faults.reach("before_commit")
                if group is not None:
                    with _sqlite_errors():
                        conn.execute("RELEASE member")
            except BaseException:
                self._undo(conn, joined=group is not None)
                self._after_block()
                raise
            if group is None:
                group = self._group = _Group(asyncio.get_running_loop())
            group.members += 1
            self._after_block()
        finally:
            self._write_lock.release()
        committed = group.committed
        if not committed.done():
            # Shielded: a writer cancelled here must not cancel the commit the others wait
            # for; its own write is committed all the same, so its notes still go out then.
            try:
                await asyncio.shield(committed)
            except asyncio.CancelledError:
                committed.add_done_callback(functools.partial(self._deliver_if_committed, tx))
                raise
        committed.result()  # the group's failure, if it failed
        self.faults.reach("after_commit_before_publish")
        self._channels.deliver(tx.notes)

    def _deliver_if_committed(
        self, tx: _SqliteTransaction, committed: asyncio.Future[None]
    ) -> None:
        if not committed.cancelled() and committed.exception() is None:
            self._channels.deliver(tx.notes)

    def _after_block(self) -> None:
        """With the write lock held, after a block: commit the open group when it is full, or
        else leave it open for the writers waiting for the lock (a committer queued behind
        them commits, should they all give up) or, with none waiting, for those the event
        loop runs before its next turn: the commit comes then (`_commit_soon`)."""
        group = self._group
        if group is None:
            return
        if group.members >= GROUP_COMMIT_MAX:
            self._commit_group()
        elif self._queued:
            self._ensure_committer()
        elif self._commit_at_once:
            # The last group kept open for a turn had no company: writes come one at a time.
            self._commit_at_once -= 1
            self._commit_group()
        elif not group.commit_scheduled:
            group.commit_scheduled = True
            asyncio.get_running_loop().call_soon(self._commit_soon, group)

    def _commit_soon(self, group: _Group) -> None:
        if self._group is not group:
            return  # committed (or failed) already
        if self._write_lock.locked():
            self._ensure_committer()  # a block under way: commit once it is done
        else:
            self._commit_group()

    def _ensure_committer(self) -> None:
        if self._committer is None or self._committer.done():
            self._committer = asyncio.create_task(
                self._commit_when_idle(), name="sqlite-group-commit"
            )

    def _commit_group(self) -> None:
        group = self._group
        assert group is not None
        assert self._writer_conn is not None
        self._group = None
        conn = self._writer_conn
        try:
            with _sqlite_errors():
                conn.execute("COMMIT")
        except Exception as exc:
            self._roll_back(conn)
            group.fail(exc)
            return
        group.committed.set_result(None)
        if group.commit_scheduled and group.members == 1:
            self._commit_at_once = COMMIT_AT_ONCE_AFTER_A_LONE_WRITER
        self._after_write(group.members)

    async def _commit_when_idle(self) -> None:
        async with self._write_lock:
            if self._group is not None:
                self._commit_group()

    def _undo(self, conn: sqlite3.Connection, *, joined: bool) -> None:
        """Undo a failed block: its savepoint when it joined a group, else its transaction.
        A group whose transaction is gone with it fails, and its writers with it."""
        if not joined:
            self._roll_back(conn)
            return
        try:
            conn.execute("ROLLBACK TO member")
            conn.execute("RELEASE member")
            intact = conn.in_transaction
        except sqlite3.Error:
            intact = False
        if not intact:
            group = self._group
            self._group = None
            self._roll_back(conn)
            if group is not None:
                group.fail(DatabaseUnavailable("the transaction of a group commit was lost"))

    async def _begin(self) -> sqlite3.Connection:
        """BEGIN IMMEDIATE on the writer connection, waiting (off the loop) for another
        process's write lock up to the busy timeout, as SQLite's own busy handler would."""
        deadline = time.monotonic() + self._busy_timeout_ms / 1000
        delay = 0.001
        while True:
            try:
                with _sqlite_errors():
                    conn = self._writer_connection()
                    conn.execute("BEGIN IMMEDIATE")
                return conn
            except DatabaseUnavailable as exc:
                if not _busy(exc) or time.monotonic() + delay > deadline:
                    raise
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.05)

    def _roll_back(self, conn: sqlite3.Connection) -> None:
        try:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
        except sqlite3.Error:
            # A connection that cannot even roll back is in no known state: the next write
            # opens a new one (closing this one rolls back whatever it still holds).
            self._writer_conn = None
            with contextlib.suppress(sqlite3.Error):
                conn.close()

    def _writer_connection(self) -> sqlite3.Connection:
        if self._writer_conn is None:
            if self._closed:
                raise RuntimeError("the database is closed")
            conn = _sqlite_connect(str(self.path), busy_timeout_ms=0, same_thread=False)
            conn.execute("PRAGMA wal_autocheckpoint=0")
            self._writer_conn = conn
        return self._writer_conn

    def _after_write(self, writes: int) -> None:
        self._writes_since_checkpoint += writes
        if self._writes_since_checkpoint < CHECKPOINT_EVERY_WRITES:
            return
        self._writes_since_checkpoint = 0
        if self._checkpointing is None or self._checkpointing.done():
            self._checkpointing = asyncio.create_task(self._checkpoint(), name="sqlite-checkpoint")

    async def _checkpoint(self) -> None:
        """Copy the log back into the database file on a reader thread, holding the write
        lock as SQLite's own automatic checkpoint would: with no frame added meanwhile, the
        next write starts the log over instead of growing it.

        The log is synced first, without the lock: the checkpoint syncs it before copying,
        and writing 500 commits' frames to the disk was most of the 20-50 ms for which every
        write waited. What is left under the lock is the sync of the frames added meanwhile
        (a few commits') and the database file's. The log may grow by those few commits.
        """
        try:
            await self._run(self._readers, lambda _conn: _sync_file(self._log_path))
            async with self._write_lock:
                await self._run(self._readers, _checkpoint)
        except Exception as exc:
            log.warning("sqlite_checkpoint_failed", error=str(exc))

    async def ping(self) -> None:
        await self.fetch_one(_PING)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._checkpointing is not None:
            await self._checkpointing
        async with self._write_lock:  # a transaction under way finishes first
            if self._group is not None:
                self._commit_group()
            if self._writer_conn is not None:
                with contextlib.suppress(sqlite3.Error):
                    self._writer_conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
                self._writer_conn.close()
                self._writer_conn = None
        self._readers.shutdown()
        # Each was used only by the thread that opened it, and none is in use now.
        for conn in self._inline_conns:
            conn.close()
        self._inline_conns.clear()


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
    dialect: Dialect = "postgresql"

    def __init__(self, conn: Any, timeout: float) -> None:
        self._conn = conn
        self._timeout = timeout
        self.notes: list[tuple[str, str]] = []

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

    async def notify(self, channel: str, payload: str) -> None:
        # NOTIFY is sent at commit (to every process); this process's listeners hear it at
        # once, without the round trip.
        await self.execute(
            "SELECT pg_notify(:channel, :payload)", {"channel": channel, "payload": str(payload)}
        )
        self.notes.append((channel, payload))

    def notified(self, channel: str, payload: str) -> None:
        self.notes.append((channel, payload))

    @asynccontextmanager
    async def savepoint(self) -> AsyncIterator[None]:
        async with self._conn.transaction():  # nested: a SAVEPOINT
            yield


def _terminate(conn: Any) -> None:
    """Close a pooled connection at once; one the pool has already let go of is left alone."""
    with contextlib.suppress(asyncpg.InterfaceError):
        conn.terminate()


async def _keep_session(conn: asyncpg.Connection[Any]) -> None:
    """Release a pooled connection with no reset query. asyncpg's default sends one (advisory
    unlock, CLOSE ALL, UNLISTEN *, RESET ALL) on every release: a round trip per transaction
    for state we never create, since no statement of ours takes an advisory lock, opens a
    cursor, LISTENs (that has its own connection) or SETs a session variable. What a release
    must still undo, asyncpg undoes before calling this: an open transaction is rolled back
    and listeners are dropped."""


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
        self._channels = LocalChannels()
        self.faults = NO_FAULTS

    async def _get_pool(self) -> asyncpg.Pool[Any]:
        if self._pool is not None:
            return self._pool
        async with self._pool_lock:
            if self._pool is None:
                try:
                    # `min_size` connections are opened here, at the first use (the start), and
                    # none is dropped for being idle: a pool that opens them on demand meets a
                    # burst of requests with connections that each take a round of handshakes
                    # to open, within the same deadline as the statement they are for.
                    self._pool = await asyncpg.create_pool(
                        self.dsn,
                        min_size=self._min_size,
                        max_size=self._max_size,
                        timeout=self.timeout,
                        command_timeout=self.timeout,
                        max_inactive_connection_lifetime=0,
                        reset=_keep_session,
                    )
                except _PG_UNAVAILABLE as exc:
                    raise DatabaseUnavailable(type(exc).__name__) from exc
        return self._pool

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[Any]:
        pool = await self._get_pool()
        try:
            conn = await pool.acquire(timeout=self.timeout)
        except _PG_UNAVAILABLE as exc:
            raise DatabaseUnavailable(type(exc).__name__) from exc
        try:
            yield conn
        except (*_PG_UNAVAILABLE, DatabaseUnavailable) as exc:
            # A connection whose statement timed out would make the release wait for the
            # server to confirm the cancel (another full timeout when it hangs), and one the
            # server dropped is of no further use: either way, drop it.
            _terminate(conn)
            if isinstance(exc, DatabaseUnavailable):
                raise
            raise DatabaseUnavailable(type(exc).__name__) from exc
        except asyncio.CancelledError:
            _terminate(conn)  # cancelled mid-statement (a deadline): same reason
            raise
        finally:
            # The reset on release may meet a connection the server has just dropped; the
            # pool has then closed it, and what ran on it before stands (committed or not).
            with contextlib.suppress(*_PG_UNAVAILABLE):
                await pool.release(conn)

    async def _read(self, call: Callable[[_PgTransaction], Awaitable[T]]) -> T:
        # One deadline for acquire (which may connect) and the statement together.
        try:
            async with asyncio.timeout(self.timeout):
                async with self._connection() as conn:
                    return await call(_PgTransaction(conn, self.timeout))
        except TimeoutError as exc:
            raise DatabaseUnavailable("TimeoutError") from exc

    async def fetch_one(self, sql: str, params: Params = None) -> Row | None:
        return await self._read(lambda tx: tx.fetch_one(sql, params))

    async def fetch_all(self, sql: str, params: Params = None) -> list[Row]:
        return await self._read(lambda tx: tx.fetch_all(sql, params))

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        async with self._connection() as conn:
            tx = _PgTransaction(conn, self.timeout)
            try:
                async with conn.transaction():
                    yield tx
                    self.faults.reach("before_commit")
            except _PG_UNAVAILABLE as exc:
                raise DatabaseUnavailable(type(exc).__name__) from exc
            self.faults.reach("after_commit_before_publish")
        self._channels.deliver(tx.notes)

    async def ping(self) -> None:
        await self.fetch_one(_PING)

    async def listen(self, channel: str, callback: Notified) -> Listening:
        """This process's commits at once; other processes' through a LISTEN connection,
        which `keep_alive` opens, checks and reopens."""
        return _PgListening(self, channel, callback)

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None


class _PgListening:
    """A dedicated LISTEN connection, with the local delivery of this process's commits."""

    def __init__(self, db: PostgresDatabase, channel: str, callback: Notified) -> None:
        self._db = db
        self._channel = channel
        self._callback = callback
        self._local = LocalListening(db._channels, channel, callback)
        self.connection: asyncpg.Connection[Any] | None = None
        self._checked = 0.0
        self._outage = False

    async def keep_alive(self) -> None:
        conn = self.connection
        if conn is not None and not conn.is_closed():
            now = time.monotonic()
            if now - self._checked < LISTEN_CHECK_SECONDS:
                return
            # A connection can also die without a word (a dropped network path): ask it.
            self._checked = now
            try:
                await conn.execute("SELECT 1", timeout=self._db.timeout)
                return
            except Exception:
                log.warning("change_listener_lost")
        await self._close_connection()
        try:
            self.connection = await self._connect()
        except Exception as exc:
            if not self._outage:  # said once per outage; the next call tries again
                self._outage = True
                log.warning("change_listener_unavailable", error=type(exc).__name__)
            return
        self._outage = False
        self._checked = time.monotonic()
        self._callback(None)  # anything committed while we were not listening

    async def _connect(self) -> asyncpg.Connection[Any]:
        conn: asyncpg.Connection[Any] = await asyncio.wait_for(
            asyncpg.connect(self._db.dsn), timeout=self._db.timeout
        )
        try:
            await conn.add_listener(
                self._channel, lambda _c, _pid, _ch, payload: self._callback(payload)
            )
            # When the server goes away, reconnect at once rather than at the next poll.
            conn.add_termination_listener(lambda _conn: self._callback(None))
        except BaseException:
            conn.terminate()
            raise
        return conn

    async def _close_connection(self) -> None:
        conn, self.connection = self.connection, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), timeout=1)

    async def close(self) -> None:
        await self._local.close()
        await self._close_connection()


# ------------------------------------------------------------------------- factory


def postgres_dsn(url: str) -> str:
    """An asyncpg DSN from a SQLAlchemy-style URL (`postgresql+asyncpg://…`)."""
    scheme, rest = url.split("://", 1)
    return f"postgresql://{rest}" if scheme.startswith("postgres") else url


def sqlite_path(url: str) -> Path:
    """The file of a `sqlite:///relative` or `sqlite:////absolute` URL."""
    path = url.split(":///", 1)[1].split("?", 1)[0]
    return Path(path or "orchestrator.db")


# The database holds password hashes: only its owner may read it. SQLite gives its -wal and
# -shm files the database file's mode.
PRIVATE_FILE = 0o600
PRIVATE_DIR = 0o700


def prepare_sqlite_file(path: Path) -> None:
    """Create the database file (and its directory) private to this user, or make it so."""
    if not path.parent.exists():
        path.parent.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE))
    for name in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        with contextlib.suppress(FileNotFoundError):
            mode = name.stat().st_mode & 0o777
            if mode & ~PRIVATE_FILE:
                name.chmod(mode & PRIVATE_FILE)
                log.warning("sqlite_file_made_private", path=str(name), was=oct(mode))


def open_database(
    url: str, *, timeout: float, pool_size: int | None = None
) -> SqliteDatabase | PostgresDatabase:
    """The backend for a database URL; `pool_size` PostgreSQL connections, all opened at once
    (by default one, growing to ten on demand)."""
    scheme = url.split("://", 1)[0]
    if scheme.startswith("sqlite"):
        path = sqlite_path(url)
        prepare_sqlite_file(path)
        return SqliteDatabase(path)
    if scheme.startswith("postgres"):
        if pool_size is None:
            return PostgresDatabase(postgres_dsn(url), timeout=timeout)
        return PostgresDatabase(
            postgres_dsn(url), timeout=timeout, min_size=pool_size, max_size=pool_size
        )
    raise ValueError(f"unsupported database URL scheme {scheme!r}")
