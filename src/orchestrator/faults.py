"""Named fault points that SIGKILL the process, for crash-durability tests (test mode only).

`ORCH_FAULT_POINT` names the point (`before_commit`, `after_commit_before_response`,
`after_commit_before_publish`, or `random` for any of them); the process dies at the
`ORCH_FAULT_AFTER`+1-th hit, or with `ORCH_FAULT_PROBABILITY` per hit drawn from
`ORCH_FAULT_SEED`. Outside `environment == "test"` every point is inert.
"""

from __future__ import annotations

import os
import random
import signal
import sys
from typing import Literal

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from orchestrator.config import Settings
from orchestrator.context import request_id_var

FaultPoint = Literal["before_commit", "after_commit_before_response", "after_commit_before_publish"]
FAULT_POINTS: tuple[FaultPoint, ...] = (
    "before_commit",
    "after_commit_before_response",
    "after_commit_before_publish",
)
_WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# Logging in commits nothing the crash checker tracks; never die on it.
_NOT_WRITES = ("/auth/login",)


class Faults:
    """Decides, hit by hit, whether to kill the process at a named point."""

    def __init__(
        self,
        *,
        point: str | None = None,
        after: int = 0,
        probability: float | None = None,
        seed: int = 0,
    ) -> None:
        if point is not None and point != "random" and point not in FAULT_POINTS:
            raise ValueError(f"unknown fault point {point!r}")
        self.point = point
        self.after = after
        self.probability = probability
        self._random = random.Random(seed)  # noqa: S311 - reproducible chaos, not security
        self._hits = 0
        # Start-up (bootstrap admin, migrations) is not under test: points fire once armed.
        self.armed = False

    @property
    def enabled(self) -> bool:
        return self.point is not None

    def arm(self) -> None:
        self.armed = self.enabled

    def reach(self, point: FaultPoint) -> None:
        """Die here when the configured point, count or draw says so."""
        if not self.armed or self.point not in (point, "random"):
            return
        if request_id_var.get() is None:
            # Background writes (lease sweeps, pruning) are not what clients were told about;
            # counting them would make the kills land at times no test can replay.
            return
        self._hits += 1
        if self.probability is not None:
            if self._random.random() >= self.probability:
                return
        elif self._hits <= self.after:
            return
        # Say where, so a test can tell which point fired; then die as a power cut would.
        sys.stderr.write(f"fault point reached: {point}\n")
        sys.stderr.flush()
        os.kill(os.getpid(), signal.SIGKILL)


NO_FAULTS = Faults()


class FaultResponseMiddleware:
    """Kill the process after a write committed but before its response leaves."""

    def __init__(self, app: ASGIApp, *, faults: Faults) -> None:
        self.app = app
        self.faults = faults

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] not in _WRITE_METHODS
            or scope["path"].endswith(_NOT_WRITES)
        ):
            await self.app(scope, receive, send)
            return

        async def send_or_die(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] < 400:
                self.faults.reach("after_commit_before_response")
            await send(message)

        await self.app(scope, receive, send_or_die)


def faults_for(settings: Settings) -> Faults:
    """The configured fault points; inert unless the environment is `test`."""
    if settings.environment != "test" or not settings.fault_point:
        return NO_FAULTS
    return Faults(
        point=settings.fault_point,
        after=settings.fault_after,
        probability=settings.fault_probability,
        seed=settings.fault_seed,
    )
