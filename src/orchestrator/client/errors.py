"""What the server refused, as exceptions carrying its error envelope."""

from __future__ import annotations

import email.utils
from datetime import UTC, datetime
from typing import Any


class ApiError(Exception):
    """A non-2xx answer: `status_code`, the envelope's `code` and `message`, and `retry_after`."""

    def __init__(
        self,
        status_code: int,
        message: str,
        body: Any = None,
        *,
        retry_after: float | None = None,
        etag: str | None = None,
    ) -> None:
        super().__init__(f"{status_code}: {message}")
        self.status_code = status_code
        self.message = message
        self.body = body
        self.retry_after = retry_after
        self.etag = etag
        error = body.get("error") if isinstance(body, dict) else None
        self.code: str | None = str(error["code"]) if isinstance(error, dict) else None

    @property
    def transient(self) -> bool:
        """Worth retrying later: the server is busy, unavailable or failed (429, 5xx)."""
        return self.status_code == 429 or self.status_code >= 500


class AuthenticationError(ApiError):
    """401: bad credentials, or a token that is expired, revoked or of a disabled account."""


class PermissionDeniedError(ApiError):
    """403: the account's role may not do this."""


class NotFoundError(ApiError):
    """404: no such job or task."""


class ConflictError(ApiError):
    """409: an illegal transition, or a lease that is no longer held."""


class PreconditionFailedError(ApiError):
    """412: the resource changed since the ETag sent; `etag` is its current one."""


class RateLimitedError(ApiError):
    """429: too many requests; `retry_after` says when to try again."""


_KINDS: dict[int, type[ApiError]] = {
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    412: PreconditionFailedError,
    429: RateLimitedError,
}


def retry_after_seconds(value: str | None) -> float | None:
    """`Retry-After` as seconds from now: delay-seconds or an HTTP date (RFC 9110 §10.2.3)."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def error_for(
    status_code: int, body: Any, *, retry_after: str | None = None, etag: str | None = None
) -> ApiError:
    message = ""
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        message = str(body["error"].get("message", ""))
    kind = _KINDS.get(status_code, ApiError)
    return kind(
        status_code,
        message or f"HTTP {status_code}",
        body,
        retry_after=retry_after_seconds(retry_after),
        etag=etag,
    )
