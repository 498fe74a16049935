"""The Python SDK: `Client`, `AsyncClient`, `subscribe()` and the `Worker` runner.

It uses only the public HTTP and WebSocket API, so it runs anywhere the server is reachable.
"""

from orchestrator.client.calls import UNSET, JobClaim, NextJobs, Reported
from orchestrator.client.context import JobContext, JobLogHandler, current_job
from orchestrator.client.errors import (
    ApiError,
    AuthenticationError,
    ConflictError,
    NotFoundError,
    PermissionDeniedError,
    PreconditionFailedError,
    RateLimitedError,
)
from orchestrator.client.feed import FeedAuthError, Subscription
from orchestrator.client.http import AsyncClient, Client
from orchestrator.client.worker import DoNotRetry, Worker, WorkerStopped

__all__ = [
    "UNSET",
    "ApiError",
    "AsyncClient",
    "AuthenticationError",
    "Client",
    "ConflictError",
    "DoNotRetry",
    "FeedAuthError",
    "JobClaim",
    "JobContext",
    "JobLogHandler",
    "NextJobs",
    "NotFoundError",
    "PermissionDeniedError",
    "PreconditionFailedError",
    "RateLimitedError",
    "Reported",
    "Subscription",
    "Worker",
    "WorkerStopped",
    "current_job",
]
