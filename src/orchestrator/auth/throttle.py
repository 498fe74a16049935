"""Failed sign-ins slow an account down, whichever addresses they come from.

Each attempt at an account counts as a failure before its password is checked (so that
concurrent guesses cannot all slip through), and a successful sign-in forgets them all. After
`free` failures each further attempt must wait a delay that doubles with every failure up to
`max_delay`; an attempt during the delay is refused without counting, so the real user is
slowed, never locked out. The counts live in the database, shared by every process.
Accounts that do not exist are counted the same way: the answers tell nothing about them.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import structlog

from orchestrator.config import Settings
from orchestrator.db import Database
from orchestrator.errors import ApiError

log = structlog.get_logger(__name__)
POLICY = "login_account"
# Client addresses whose recent failures this process remembers (the oldest are forgotten).
ADDRESSES_KEPT = 10_000


class AccountThrottled(ApiError):
    status_code = 429
    default_message = "Too many failed sign-ins for this account"

    def __init__(self, retry_after: int, *, free: int, window: int) -> None:
        super().__init__(
            f"Too many failed sign-ins for this account; retry after {retry_after} seconds",
            headers={
                "Retry-After": str(retry_after),
                "RateLimit-Policy": f'"{POLICY}";q={free};w={window}',
                "RateLimit": f'"{POLICY}";r=0;t={retry_after}',
            },
        )
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class AccountPolicy:
    free: int
    delay: float
    max_delay: float
    window: float

    @classmethod
    def from_settings(cls, settings: Settings) -> AccountPolicy:
        return cls(
            free=settings.rate_limit_account_failures,
            delay=settings.rate_limit_account_delay_seconds,
            max_delay=settings.rate_limit_account_max_delay_seconds,
            window=settings.rate_limit_account_window_seconds,
        )

    def delay_after(self, failures: int) -> float:
        """How long the next attempt waits once `failures` are counted."""
        if failures <= self.free:
            return 0.0
        return min(self.max_delay, self.delay * 2.0 ** min(failures - self.free - 1, 64))


async def charge(db: Database, *, account: str, policy: AccountPolicy, now: float) -> None:
    """Count an attempt at `account` as a failure, or raise `AccountThrottled` (counting
    nothing) while its delay runs."""
    async with db.transaction() as tx:
        await tx.execute(
            "INSERT INTO login_failures (account, failures, last_failed_at, blocked_until) "
            "VALUES (:account, 0, 0, 0) ON CONFLICT (account) DO NOTHING",
            {"account": account},
        )
        lock = " FOR UPDATE" if tx.dialect == "postgresql" else ""
        row = await tx.fetch_one(
            "SELECT failures, last_failed_at, blocked_until FROM login_failures "
            f"WHERE account = :account{lock}",
            {"account": account},
        )
        assert row is not None
        blocked_until = float(row["blocked_until"])
        if blocked_until <= now:
            stale = float(row["last_failed_at"]) <= now - policy.window
            failures = 1 if stale else int(row["failures"]) + 1
            await tx.execute(
                "UPDATE login_failures SET failures = :failures, last_failed_at = :now, "
                "blocked_until = :until WHERE account = :account",
                {
                    "account": account,
                    "failures": failures,
                    "now": now,
                    "until": now + policy.delay_after(failures),
                },
            )
    if blocked_until > now:
        raise AccountThrottled(
            max(1, math.ceil(blocked_until - now)),
            free=policy.free,
            window=math.ceil(policy.window),
        )


async def forget(db: Database, *, account: str) -> None:
    """A successful sign-in: the account's failures are forgotten."""
    async with db.transaction() as tx:
        await tx.execute(
            "DELETE FROM login_failures WHERE account = :account", {"account": account}
        )


def login_failure_retention(
    db: Database, *, policy: AccountPolicy
) -> Callable[[], Awaitable[None]]:
    """The pruner's chore: forget accounts whose failures are past the window and whose delay
    is over (the count restarts then anyway; this keeps the table small)."""

    async def prune() -> None:
        now = time.time()
        async with db.transaction() as tx:
            pruned = await tx.execute(
                "DELETE FROM login_failures "
                "WHERE last_failed_at < :cutoff AND blocked_until < :now",
                {"cutoff": now - policy.window, "now": now},
            )
        if pruned:
            log.info("login_failures_pruned", accounts=pruned)

    return prune


class AddressFailures:
    """Recent failed sign-ins and sign-ins under way per client address, in this process:
    the hashing queue serves the addresses that keep failing, or send many at once, last."""

    def __init__(self, *, window: float = 60.0, kept: int = ADDRESSES_KEPT) -> None:
        self._window = window
        self._kept = kept
        self._failures: OrderedDict[str, tuple[int, float]] = OrderedDict()
        self._under_way: dict[str, int] = {}

    def penalty(self, address: str) -> int:
        return self._recent(address, time.monotonic()) + self._under_way.get(address, 0)

    def started(self, address: str) -> None:
        self._under_way[address] = self._under_way.get(address, 0) + 1

    def ended(self, address: str, *, failed: bool) -> None:
        left = self._under_way.pop(address, 1) - 1
        if left > 0:
            self._under_way[address] = left
        if not failed:
            return
        now = time.monotonic()
        # remembered until `window` after the last failure: a steady guesser stays last
        self._failures[address] = (self._recent(address, now) + 1, now)
        self._failures.move_to_end(address)
        while len(self._failures) > self._kept:
            self._failures.popitem(last=False)

    def _recent(self, address: str, now: float) -> int:
        entry = self._failures.get(address)
        if entry is None:
            return 0
        count, last = entry
        if now - last > self._window:
            del self._failures[address]
            return 0
        return count
