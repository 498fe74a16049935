"""The Python SDK: `Client`, `AsyncClient`, `subscribe()` and the `Worker` runner.

It uses only the public HTTP and WebSocket API, so it runs anywhere the server is reachable.
"""

from orchestrator.client.calls import JobClaim
from orchestrator.client.errors import ApiError, ConflictError, NotFoundError
from orchestrator.client.http import AsyncClient, Client
from orchestrator.client.worker import DoNotRetry, Worker

__all__ = [
    "ApiError",
    "AsyncClient",
    "Client",
    "ConflictError",
    "DoNotRetry",
    "JobClaim",
    "NotFoundError",
    "Worker",
]
