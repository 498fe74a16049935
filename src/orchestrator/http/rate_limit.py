"""Rate limits per verified user or client IP, counted in memory or in Redis shared by processes.

Fixed windows that start at a key's first hit: exactly the configured number of requests pass
per window, for one counter per key (a moving window keeps every timestamp).
"""

from __future__ import annotations

import asyncio
import math
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import cast
from urllib.parse import unquote

import structlog
from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage, RedisStorage
from limits.aio.storage.redis.redispy import RedispyBridge
from limits.aio.strategies import FixedWindowRateLimiter
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from orchestrator.auth.tokens import TokenService, subprotocol_token
from orchestrator.config import Settings
from orchestrator.errors import ApiError, Unauthorized
from orchestrator.http.client_ip import ClientAddress, ForwardedHeader
from orchestrator.http.errors import error_response
from orchestrator.observability.metrics import Metrics

log = structlog.get_logger(__name__)

LOGIN_PATHS = frozenset({"/auth/login", "/api/v1/auth/login", "/auth/session"})
# Probes and scrapes come from infrastructure; limiting them would only cause false alarms.
EXEMPT_PATHS = frozenset(
    {"/health", "/healthz", "/api/v1/health", "/api/v1/healthz", "/metrics", *LOGIN_PATHS}
)
_WORKER_CALL = re.compile(r"^/api/v1/jobs/(claim|[^/]+/(heartbeat|complete|fail|release))$")
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# A Redis that does not answer within this costs each request at most this much, once per
# cool-down; local counters answer in between.
REDIS_TIMEOUT_SECONDS = 0.5
REDIS_RETRY_AFTER_SECONDS = 2.0


@dataclass(frozen=True, slots=True)
class Refusal:
    """A request over `policy`: what the client is told."""

    policy: str
    limit: RateLimitItem
    retry_after: int

    def headers(self) -> dict[str, str]:
        window = self.limit.get_expiry()
        return {
            "Retry-After": str(self.retry_after),
            # draft-ietf-httpapi-ratelimit-headers: quota and window, remaining and reset
            "RateLimit-Policy": f'"{self.policy}";q={self.limit.amount};w={window}',
            "RateLimit": f'"{self.policy}";r=0;t={self.retry_after}',
        }


class RateLimited(ApiError):
    status_code = 429
    default_message = "Too many requests"

    def __init__(self, refusal: Refusal) -> None:
        super().__init__(
            f"Too many requests; retry after {refusal.retry_after} seconds",
            headers=refusal.headers(),
        )


class RateLimits:
    """The configured policies and the counters behind them."""

    def __init__(
        self,
        *,
        enabled: bool,
        policies: Mapping[str, RateLimitItem],
        tokens: TokenService | None = None,
        metrics: Metrics | None = None,
        redis_url: str | None = None,
        key_prefix: str = "orch",
        trusted_proxies: tuple[str, ...] = (),
        forwarded_header: ForwardedHeader = "x-forwarded-for",
    ) -> None:
        self.enabled = enabled
        self.policies = dict(policies)
        self.client_address = ClientAddress(trusted_proxies, forwarded_header)
        self._tokens = tokens
        self._metrics = metrics or Metrics()
        self._local = FixedWindowRateLimiter(MemoryStorage())
        self._redis: RedisStorage | None = None
        self._shared: FixedWindowRateLimiter | None = None
        if redis_url:
            self._redis = RedisStorage(
                "async+" + redis_url.removeprefix("async+"),
                implementation="redispy",
                key_prefix=f"{key_prefix}:rate-limit",
                socket_timeout=REDIS_TIMEOUT_SECONDS,
                socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
                retry=Retry(NoBackoff(), 0),  # type: ignore[arg-type]
            )
            self._shared = FixedWindowRateLimiter(self._redis)
        self._redis_down_until = 0.0
        self._degraded = False

    @classmethod
    def from_settings(
        cls, settings: Settings, *, tokens: TokenService, metrics: Metrics
    ) -> RateLimits:
        return cls(
            enabled=settings.rate_limit_enabled,
            policies={
                "login": parse(settings.rate_limit_login),
                "login_ip": parse(settings.rate_limit_login_ip),
                "writes": parse(settings.rate_limit_writes),
                "reads": parse(settings.rate_limit_reads),
                "ws_connect": parse(settings.rate_limit_ws_connect),
                "workers": parse(settings.rate_limit_workers),
            },
            tokens=tokens,
            metrics=metrics,
            redis_url=settings.redis_url.get_secret_value() if settings.redis_url else None,
            key_prefix=settings.redis_key_prefix,
            trusted_proxies=tuple(settings.trusted_proxies),
            forwarded_header=settings.forwarded_header,
        )

    @classmethod
    def disabled(cls) -> RateLimits:
        return cls(enabled=False, policies={})

    async def close(self) -> None:
        if self._redis is not None:
            await cast(RedispyBridge, self._redis.bridge).storage.aclose()
        timer = getattr(self._local.storage, "timer", None)
        if isinstance(timer, asyncio.Task):
            timer.cancel()

    def key_of(self, scope: Scope) -> str:
        """`user:<sub>` for a request bearing a valid token, else `ip:<client address>`."""
        token = _token_of(scope)
        if token is not None and self._tokens is not None:
            try:
                return f"user:{self._tokens.verify(token).sub}"
            except Unauthorized:
                pass
        return f"ip:{self.client_address.of(scope)}"

    async def hit(self, policy: str, *key: str) -> Refusal | None:
        """Count one request against `policy`; a `Refusal` when it is over the limit."""
        limit = self.policies[policy]
        limiter = self._limiter()
        try:
            allowed = await asyncio.wait_for(limiter.hit(limit, policy, *key), _budget(limiter))
        except (RedisError, OSError, TimeoutError) as exc:
            self._redis_failed(exc)
            limiter = self._local
            allowed = await limiter.hit(limit, policy, *key)
        else:
            if limiter is self._shared and self._degraded:
                self._degraded = False
                self._metrics.rate_limit_degraded.set(0)
                log.info("rate_limit_storage_recovered")
        if allowed:
            return None
        self._metrics.rate_limited.labels(policy).inc()
        try:
            stats = await asyncio.wait_for(
                limiter.get_window_stats(limit, policy, *key), _budget(limiter)
            )
            reset = stats.reset_time
        except (RedisError, OSError, TimeoutError):
            reset = time.time() + limit.get_expiry()
        return Refusal(policy, limit, max(1, math.ceil(reset - time.time())))

    async def check_login(self, scope: Scope, *, username: str) -> None:
        """Raise `RateLimited` when this client or this username from it tried too often."""
        if not self.enabled:
            return
        ip = self.client_address.of(scope)
        refusal = await self.hit("login_ip", ip)
        if refusal is None:
            refusal = await self.hit("login", ip, username.casefold())
        if refusal is not None:
            raise RateLimited(refusal)

    def _limiter(self) -> FixedWindowRateLimiter:
        if self._shared is not None and time.monotonic() >= self._redis_down_until:
            return self._shared
        return self._local

    def _redis_failed(self, exc: BaseException) -> None:
        self._redis_down_until = time.monotonic() + REDIS_RETRY_AFTER_SECONDS
        self._metrics.rate_limit_fallbacks.inc()
        if not self._degraded:
            self._degraded = True
            self._metrics.rate_limit_degraded.set(1)
            log.warning(
                "rate_limit_storage_unavailable",
                error=type(exc).__name__,
                detail=str(exc),
                fallback="memory",
            )


def _budget(limiter: FixedWindowRateLimiter) -> float | None:
    return 2 * REDIS_TIMEOUT_SECONDS if not isinstance(limiter.storage, MemoryStorage) else None


def _token_of(scope: Scope) -> str | None:
    header: bytes
    for name, header in scope.get("headers", ()):
        if name == b"authorization":
            scheme, _, token = header.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
            return None
    if scope["type"] == "websocket":
        offered = subprotocol_token(scope.get("subprotocols", ()))
        if offered is not None:
            return offered
        query: bytes = scope.get("query_string", b"")
        for part in query.decode("latin-1").split("&"):
            key, _, value = part.partition("=")
            if key == "token" and value:
                return unquote(value)
    return None


class RateLimitMiddleware:
    """Applies the reads, writes and WebSocket-connect policies before routing."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        services = getattr(scope.get("app"), "state", None)
        limits: RateLimits | None = getattr(
            getattr(services, "services", None), "rate_limits", None
        )
        if limits is None or not limits.enabled or scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            policy = "ws_connect"
        elif scope["path"] in EXEMPT_PATHS:
            await self.app(scope, receive, send)
            return
        elif _WORKER_CALL.match(scope["path"]) and scope["method"] == "POST":
            # A worker makes two writes per job plus heartbeats: its own, larger budget.
            policy = "workers"
        else:
            policy = "reads" if scope["method"] in READ_METHODS else "writes"
        key = limits.key_of(scope)
        if key.startswith("user:"):
            # verified already: the access line can name the user even if no route does
            scope.setdefault("state", {}).setdefault("user", key.removeprefix("user:"))
        refusal = await limits.hit(policy, key)
        if refusal is None:
            await self.app(scope, receive, send)
            return
        if scope["type"] == "http":
            await _refusal_response(scope, refusal)(scope, receive, send)
        else:
            await _refuse_websocket(scope, receive, send, refusal)


def _refusal_response(scope: Scope, refusal: Refusal) -> Response:
    error = RateLimited(refusal)
    return error_response(scope, 429, error.message, headers=error.headers)


async def _refuse_websocket(scope: Scope, receive: Receive, send: Send, refusal: Refusal) -> None:
    # Refused even when the client has already left (a flood's usual case): the server then
    # raises its own disconnect error, which it takes quietly, where returning without an
    # answer is an ERROR line in its log.
    await receive()
    if "websocket.http.response" in scope.get("extensions", {}):
        response = _refusal_response(scope, refusal)
        await send(
            {
                "type": "websocket.http.response.start",
                "status": 429,
                "headers": response.raw_headers,
            }
        )
        await send({"type": "websocket.http.response.body", "body": response.body})
        return
    await send({"type": "websocket.close", "code": 1008, "reason": "rate limited"})
