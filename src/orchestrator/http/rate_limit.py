"""Rate limits per verified user or client IP, counted in memory or in Redis shared by processes.

Fixed windows that start at a key's first hit: exactly the configured number of requests pass
per window, for one counter per key (a moving window keeps every timestamp). A request counts
against the reads or the writes of its method, unless its route declares otherwise
(`limited_as`, `unlimited`); who sent it is told by the `identify` that `create_app` hands in.
"""

from __future__ import annotations

import asyncio
import math
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TypeVar, cast

import structlog
from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage, RedisStorage
from limits.aio.storage.redis.redispy import RedispyBridge
from limits.aio.strategies import FixedWindowRateLimiter
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from orchestrator.config import Settings
from orchestrator.errors import ApiError
from orchestrator.http.client_ip import ClientAddress, ForwardedHeader
from orchestrator.http.errors import error_response
from orchestrator.observability.metrics import Metrics

log = structlog.get_logger(__name__)
Endpoint = TypeVar("Endpoint", bound=Callable[..., object])
# Who a request's credential names (known without I/O), or None: then its client address counts.
Identify = Callable[[Scope], str | None]

READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_POLICY = "rate_limit_policy"  # the attribute `limited_as` and `unlimited` set on an endpoint
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


def limited_as(policy: str) -> Callable[[Endpoint], Endpoint]:
    """Count the requests of the decorated route against `policy`, not its method's."""

    def declare(endpoint: Endpoint) -> Endpoint:
        setattr(endpoint, _POLICY, policy)
        return endpoint

    return declare


def unlimited(endpoint: Endpoint) -> Endpoint:
    """Never count the requests of the decorated route (probes and scrapes come from
    infrastructure, where a limit would only cause false alarms; sign-ins count their own)."""
    setattr(endpoint, _POLICY, None)
    return endpoint


class RoutePolicies:
    """The policy of each request, from the path and method of the route it is for."""

    def __init__(self, routes: Iterable[BaseRoute]) -> None:
        self._exact: dict[tuple[str, str], str | None] = {}
        self._templates: dict[str, list[tuple[re.Pattern[str], str | None]]] = {}
        for route in routes:
            if not isinstance(route, Route) or not hasattr(route.endpoint, _POLICY):
                continue
            policy: str | None = getattr(route.endpoint, _POLICY)
            methods = set(route.methods or ())
            if "GET" in methods:
                methods.add("HEAD")  # answered as a GET further in
            for method in methods:
                if route.param_convertors:
                    self._templates.setdefault(method, []).append((route.path_regex, policy))
                else:
                    self._exact[method, route.path] = policy

    def of(self, method: str, path: str) -> str | None:
        """The policy that counts this request; None when none does."""
        key = (method, path)
        if key in self._exact:
            return self._exact[key]
        for template, policy in self._templates.get(method, ()):
            if template.match(path):
                return policy
        return "reads" if method in READ_METHODS else "writes"


class RateLimits:
    """The configured policies and the counters behind them."""

    def __init__(
        self,
        *,
        enabled: bool,
        policies: Mapping[str, RateLimitItem],
        identify: Identify | None = None,
        metrics: Metrics | None = None,
        redis_url: str | None = None,
        key_prefix: str = "orch",
        trusted_proxies: tuple[str, ...] = (),
        forwarded_header: ForwardedHeader = "x-forwarded-for",
    ) -> None:
        self.enabled = enabled
        self.policies = dict(policies)
        self.client_address = ClientAddress(trusted_proxies, forwarded_header)
        self._identify = identify
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
        cls, settings: Settings, *, identify: Identify, metrics: Metrics
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
            identify=identify,
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
        """`user:<name>` for a request whose credential names a user, else `ip:<address>`."""
        user = self._identify(scope) if self._identify is not None else None
        if user is not None:
            return f"user:{user}"
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


class RateLimitMiddleware:
    """Counts each request against its route's policy (WebSockets: `ws_connect`) before routing."""

    def __init__(self, app: ASGIApp, *, limits: RateLimits, policies: RoutePolicies) -> None:
        self.app = app
        self.limits = limits
        self.policies = policies

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        limits = self.limits
        if not limits.enabled or scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        policy = (
            "ws_connect"
            if scope["type"] == "websocket"
            else self.policies.of(scope["method"], scope["path"])
        )
        if policy is None:
            await self.app(scope, receive, send)
            return
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
