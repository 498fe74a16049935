"""Prometheus metrics, one registry per app so that several apps can live in one process."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    def __init__(self) -> None:
        self._request_series: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "orch_http_requests_total",
            "HTTP requests by route template, method and status.",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "orch_http_request_duration_seconds",
            "HTTP request latency by route template, method and status.",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "orch_http_requests_in_flight", "HTTP requests being served.", registry=self.registry
        )
        self.websockets = Gauge(
            "orch_websocket_connections", "Open WebSocket connections.", registry=self.registry
        )
        self.feed_lag = Gauge(
            "orch_change_feed_lag_revisions",
            "Latest committed revision minus the revision this process has delivered.",
            registry=self.registry,
        )
        self.rate_limited = Counter(
            "orch_rate_limited_total",
            "Requests refused by a rate limit.",
            ["policy"],
            registry=self.registry,
        )
        self.failed_logins = Counter(
            "orch_failed_logins_total",
            "Logins refused for wrong credentials.",
            registry=self.registry,
        )
        self.rate_limit_fallbacks = Counter(
            "orch_rate_limit_storage_fallbacks_total",
            "Rate-limit checks counted in local memory because Redis failed.",
            registry=self.registry,
        )
        self.rate_limit_degraded = Gauge(
            "orch_rate_limit_storage_degraded",
            "1 while rate limits are counted locally because Redis is unreachable.",
            registry=self.registry,
        )

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        """Count a served request and its latency. The labelled series are looked up once per
        (route, method, status): `labels()` validates and locks on every call."""
        key = (route, method, status)
        series = self._request_series.get(key)
        if series is None:
            labels = (route, method, str(status))
            series = (self.requests.labels(*labels), self.latency.labels(*labels))
            self._request_series[key] = series
        series[0].inc()
        series[1].observe(seconds)
