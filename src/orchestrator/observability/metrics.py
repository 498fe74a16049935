"""Prometheus metrics, one registry per app so that several apps can live in one process."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# Jobs run for milliseconds to hours: the request buckets (up to 10 s) would not tell them apart.
JOB_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 14400.0)


def _seconds_between(start: object, end: object) -> float | None:
    if not isinstance(start, str) or not isinstance(end, str):
        return None
    elapsed = (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()
    return max(0.0, elapsed)


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
        # Counted in a plain attribute, read at each scrape: a gauge's own inc() and dec()
        # take a lock each, twice per request.
        self.requests_in_flight = 0
        self.in_flight = Gauge(
            "orch_http_requests_in_flight", "HTTP requests being served.", registry=self.registry
        )
        self.in_flight.set_function(lambda: self.requests_in_flight)
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
        self.password_hashing_refused = Counter(
            "orch_password_hashing_refused_total",
            "Logins and password changes refused (503) because the hashing pool was full.",
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

        self.jobs = Gauge(
            "orch_jobs",
            "Jobs by queue and status, counted in the database at each scrape.",
            ["queue", "status"],
            registry=self.registry,
        )
        self.job_claims = Counter(
            "orch_job_claims_total", "Jobs claimed, by queue.", ["queue"], registry=self.registry
        )
        self.job_completions = Counter(
            "orch_job_completions_total",
            "Jobs reported succeeded, by queue.",
            ["queue"],
            registry=self.registry,
        )
        self.job_failures = Counter(
            "orch_job_failures_total",
            "Failures reported by workers (retried or final), by queue.",
            ["queue"],
            registry=self.registry,
        )
        self.job_run_seconds = Histogram(
            "orch_job_run_seconds",
            "From a job's claim to its completion, by queue.",
            ["queue"],
            buckets=JOB_BUCKETS,
            registry=self.registry,
        )
        self.job_queue_wait_seconds = Histogram(
            "orch_job_queue_wait_seconds",
            "From a job's creation to its first claim, by queue.",
            ["queue"],
            buckets=JOB_BUCKETS,
            registry=self.registry,
        )
        self.job_leases_expired = Counter(
            "orch_job_leases_expired_total",
            "Running jobs returned by the sweeper because their lease expired.",
            registry=self.registry,
        )

    def job_claimed(self, job: dict[str, Any]) -> None:
        """A claim answered with `job` (as clients see it)."""
        queue = str(job["queue"])
        self.job_claims.labels(queue).inc()
        if job["attempts"] == 1:
            wait = _seconds_between(job["created_at"], job["started_at"])
            if wait is not None:
                self.job_queue_wait_seconds.labels(queue).observe(wait)

    def job_completed(self, job: dict[str, Any]) -> None:
        queue = str(job["queue"])
        self.job_completions.labels(queue).inc()
        ran = _seconds_between(job["started_at"], job["finished_at"])
        if ran is not None:
            self.job_run_seconds.labels(queue).observe(ran)

    def job_failed(self, job: dict[str, Any]) -> None:
        self.job_failures.labels(str(job["queue"])).inc()

    def count_jobs(self, counts: Iterable[tuple[str, str, int]]) -> None:
        """Replace the jobs gauge with (queue, status, count) rows."""
        self.jobs.clear()
        for queue, status, count in counts:
            self.jobs.labels(queue, status).set(count)

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
