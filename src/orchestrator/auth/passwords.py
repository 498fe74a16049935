"""argon2id password hashing, always off the event loop, on a small pool of its own."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import secrets
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from orchestrator.errors import ApiError

T = TypeVar("T")
# Hashing threads yield to the event loop: a flood of sign-ins slows sign-ins, not reads.
HASHING_NICENESS = 19
BUSY_RETRY_AFTER_SECONDS = 1


class HashingBusy(ApiError):
    status_code = 503
    default_message = "Too many sign-ins at once"

    def __init__(self) -> None:
        super().__init__(
            f"Too many sign-ins at once; retry after {BUSY_RETRY_AFTER_SECONDS} seconds",
            headers={"Retry-After": str(BUSY_RETRY_AFTER_SECONDS)},
        )


def default_workers() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _yield_to_the_loop() -> None:
    # Linux: a thread's nice value is its own, and argon2's lane threads inherit it.
    with contextlib.suppress(AttributeError, OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), HASHING_NICENESS)


def _call_soon(loop: asyncio.AbstractEventLoop, callback: Callable[[], None]) -> None:
    with contextlib.suppress(RuntimeError):  # the loop is closed: nobody counts places now
        loop.call_soon_threadsafe(callback)


class Place:
    """A place in the hashing pool, held from admission until its hash has run."""

    __slots__ = ("_pool", "_state", "_turn", "penalty", "seq")

    def __init__(self, pool: HashingPool, penalty: int, seq: int) -> None:
        self._pool = pool
        self.penalty = penalty
        self.seq = seq
        self._turn: asyncio.Future[None] | None = None
        self._state = "waiting"  # → "running" → "hashing" → "done", or "evicted"

    async def run(self, fn: Callable[..., T], *args: object) -> T:
        """Wait for a thread (HashingBusy if pushed out of the queue meanwhile), run `fn`.

        The place is given back when the thread is done, even if whoever waited for it has
        gone (a client that hangs up cannot make room for more hashes than there are threads).
        """
        if self._state == "waiting":
            self._turn = asyncio.get_running_loop().create_future()
            try:
                await self._turn
            except BaseException:
                self.release()
                raise
        if self._state != "running":
            raise HashingBusy()
        loop = asyncio.get_running_loop()
        self._state = "hashing"
        job = self._pool.executor.submit(fn, *args)
        job.add_done_callback(lambda _: _call_soon(loop, self._hashed))
        return await asyncio.wrap_future(job, loop=loop)

    def release(self) -> None:
        """Give the place back (idempotent; a hash under way keeps it until it ends)."""
        state = self._state
        if state in ("hashing", "done"):
            return
        self._state = "done"
        if state == "running":
            self._pool._hand_on()
        elif state == "waiting":
            self._pool._leave(self)

    def _hashed(self) -> None:
        self._state = "running"
        self.release()

    def _start(self) -> None:
        self._state = "running"
        if self._turn is not None and not self._turn.done():
            self._turn.set_result(None)

    def _evict(self) -> None:
        self._state = "evicted"
        if self._turn is not None and not self._turn.done():
            self._turn.set_result(None)


class HashingPool:
    """At most `workers` hashes at once and `queue` more waiting; beyond that, `HashingBusy`
    at once. The queue goes by penalty (then arrival): a newcomer with a lower penalty than the
    worst waiting pushes that one out, so a flood from a few clients cannot keep others out."""

    def __init__(
        self, *, workers: int, queue: int, on_busy: Callable[[], None] | None = None
    ) -> None:
        self.workers = workers
        self.queue = queue
        self._on_busy = on_busy
        self.executor = ThreadPoolExecutor(
            workers, thread_name_prefix="argon2", initializer=_yield_to_the_loop
        )
        self._running = 0
        self._waiting: list[Place] = []
        self._seq = itertools.count()

    def admit(self, penalty: int = 0) -> Place:
        place = Place(self, penalty, next(self._seq))
        if self._running < self.workers and not self._waiting:
            self._running += 1
            place._start()
            return place
        if len(self._waiting) >= self.queue:
            worst = max(self._waiting, key=lambda p: (p.penalty, p.seq), default=None)
            if worst is None or worst.penalty <= penalty:
                self._refused()
                raise HashingBusy()
            self._waiting.remove(worst)
            worst._evict()
            self._refused()
        self._waiting.append(place)
        return place

    def _refused(self) -> None:
        if self._on_busy is not None:
            self._on_busy()

    @property
    def busy(self) -> int:
        return self._running + len(self._waiting)

    def _hand_on(self) -> None:
        if self._waiting:
            best = min(self._waiting, key=lambda p: (p.penalty, p.seq))
            self._waiting.remove(best)
            best._start()
        else:
            self._running -= 1

    def _leave(self, place: Place) -> None:
        with contextlib.suppress(ValueError):
            self._waiting.remove(place)

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)


class Passwords:
    """Hash and verify; unknown users are checked against a dummy hash at the same cost."""

    def __init__(
        self,
        hasher: PasswordHasher | None = None,
        *,
        workers: int | None = None,
        queue: int = 4,
        on_busy: Callable[[], None] | None = None,
    ) -> None:
        self._hasher = hasher or PasswordHasher()
        self._dummy_hash: str | None = None
        self.pool = HashingPool(workers=workers or default_workers(), queue=queue, on_busy=on_busy)

    def hash_sync(self, password: str) -> str:
        return self._hasher.hash(password)

    def admit(self, penalty: int = 0) -> Place:
        """A place for one hash, or `HashingBusy` at once (see `HashingPool`)."""
        return self.pool.admit(penalty)

    async def hash(self, password: str) -> str:
        return await self.admit().run(self._hasher.hash, password)

    def _verify_sync(self, password_hash: str | None, password: str) -> bool:
        if password_hash is None:
            if self._dummy_hash is None:
                self._dummy_hash = self._hasher.hash(secrets.token_urlsafe(16))
            password_hash = self._dummy_hash
            real = False
        else:
            real = True
        try:
            return self._hasher.verify(password_hash, password) and real
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    async def verify(
        self, password_hash: str | None, password: str, *, place: Place | None = None
    ) -> bool:
        """True when `password` matches; `None` means no such user (same cost, always False).
        Runs in `place` if given (admitted earlier), else in a place of its own."""
        place = place or self.admit()
        return await place.run(self._verify_sync, password_hash, password)

    async def warm_up(self) -> None:
        """Compute the dummy hash before the first login asks for it."""
        await self.verify(None, "warm-up")

    def close(self) -> None:
        self.pool.close()
