"""`JobContext`: what a handler may do while it runs its job, handed to handlers that take a
second argument (`def handle(job, context)`)."""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from typing import Any

from orchestrator.client.calls import JobClaim

MAX_PROGRESS_MESSAGE = 1_000


class JobContext:
    """The job being run, and its progress as the handler last told it.

    The worker sends the progress with its next heartbeat (every half second at most, in the
    same request as every other running job's): calling `progress` costs no request of its
    own, and only the latest value is sent.
    """

    def __init__(self, claim: JobClaim) -> None:
        self._claim = claim
        self._told: tuple[float | None, str | None] | None = None

    @property
    def job(self) -> dict[str, Any]:
        """The job as the claim showed it."""
        return self._claim.job

    @property
    def job_id(self) -> str:
        return self._claim.id

    def progress(self, fraction: float | None, message: str | None = None) -> None:
        """Say how far the job is (0 to 1; None keeps the last) and what it is doing."""
        if fraction is not None and (
            isinstance(fraction, bool) or not math.isfinite(fraction) or not 0 <= fraction <= 1
        ):
            raise ValueError("progress must be a number from 0 to 1")
        if message is not None and len(message) > MAX_PROGRESS_MESSAGE:
            raise ValueError(f"a progress message has at most {MAX_PROGRESS_MESSAGE} characters")
        self._told = (fraction, message)  # one assignment: safe from a handler's thread

    @property
    def has_progress(self) -> bool:
        return self._told is not None

    def take_progress(self) -> tuple[float | None, str | None] | None:
        """The progress told since the last call, if any (for the worker's heartbeat)."""
        told, self._told = self._told, None
        return told

    def give_back(self, told: tuple[float | None, str | None]) -> None:
        """A heartbeat that did not get through: send `told` with the next one, unless the
        handler told something newer meanwhile."""
        if self._told is None:
            self._told = told


def takes_context(handler: Callable[..., Any]) -> bool:
    """Whether `handler` takes a second positional argument (the context)."""
    try:
        parameters = inspect.signature(handler).parameters.values()
    except (TypeError, ValueError):
        return False
    positional = 0
    for parameter in parameters:
        if parameter.kind is inspect.Parameter.VAR_POSITIONAL:
            return True
        if parameter.kind in (
            inspect.Parameter.POSITIONAL_ONLY,
            inspect.Parameter.POSITIONAL_OR_KEYWORD,
        ):
            positional += 1
    return positional >= 2
