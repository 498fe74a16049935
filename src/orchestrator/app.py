"""`create_app(settings)`: middleware, routers, error handlers and the lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

from fastapi import APIRouter, FastAPI
from starlette.types import Scope

from orchestrator import __version__
from orchestrator.auth.api_key_routes import router as api_key_router
from orchestrator.auth.api_keys import ApiKeyDirectory
from orchestrator.auth.cookies import SessionCookieMiddleware
from orchestrator.auth.deps import AUTHENTICATING, Authenticator, known_owner
from orchestrator.auth.passwords import Passwords
from orchestrator.auth.routes import router as auth_router
from orchestrator.auth.session_routes import router as session_router
from orchestrator.auth.sessions import SessionDirectory, SessionKeys
from orchestrator.auth.throttle import AccountPolicy, AddressFailures, login_failure_retention
from orchestrator.auth.tokens import TokenService
from orchestrator.auth.user_routes import router as user_router
from orchestrator.auth.users import UserDirectory
from orchestrator.background import running
from orchestrator.bootstrap import ensure_admin
from orchestrator.changes.hub import Hub
from orchestrator.changes.routes import router as changes_router
from orchestrator.config import Settings, load_secret_key
from orchestrator.console.routes import router as console_router
from orchestrator.db import open_database
from orchestrator.db.feed import ChangeFeed
from orchestrator.db.retention import retention_pruner
from orchestrator.faults import FaultResponseMiddleware, faults_for
from orchestrator.health import router as health_router
from orchestrator.http.body_limit import BodyLimitMiddleware
from orchestrator.http.content_type import JsonContentTypeMiddleware
from orchestrator.http.cors import Cors
from orchestrator.http.docs import install_docs
from orchestrator.http.edge import Edge
from orchestrator.http.errors import install_error_handlers
from orchestrator.http.head import HeadAsGetMiddleware
from orchestrator.http.lists import ListCache
from orchestrator.http.openapi import install_openapi
from orchestrator.http.rate_limit import RateLimitMiddleware, RateLimits, RoutePolicies
from orchestrator.http.resource_ids import register_resource_ids
from orchestrator.http.routing import index_routes, routes_of
from orchestrator.http.stack import Application
from orchestrator.jobs.lease_routes import router as lease_router
from orchestrator.jobs.leases import LeaseKeys
from orchestrator.jobs.retention import job_retention
from orchestrator.jobs.routes import router as jobs_router
from orchestrator.jobs.sweeper import lease_sweeper
from orchestrator.jobs.waiters import ClaimWaiters
from orchestrator.observability.access_log import name_plain_routes
from orchestrator.observability.logging import protect_secret
from orchestrator.observability.metrics import Metrics
from orchestrator.observability.routes import router as metrics_router
from orchestrator.observability.routes import test_router as test_fault_router
from orchestrator.queues.counts import count_folder
from orchestrator.queues.routes import router as queues_router
from orchestrator.schedules.firer import ScheduleFirer
from orchestrator.schedules.routes import router as schedules_router
from orchestrator.services import Services
from orchestrator.tasks.routes import router as tasks_router

API_PREFIX = "/api/v1"


def build_services(settings: Settings, *, metrics: Metrics, rate_limits: RateLimits) -> Services:
    """Every per-process object, wired together; nothing runs until the lifespan starts it.

    `metrics` and `rate_limits` are the app's own, made with it: its middleware counts with them.
    """
    db = open_database(
        settings.resolved_database_url,
        timeout=settings.db_timeout_seconds,
        pool_size=settings.db_pool_size,
    )
    secret = load_secret_key(settings)
    protect_secret(secret)
    tokens = TokenService(
        secret=secret,
        algorithm=settings.jwt_algorithm,
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        lifetime_seconds=settings.token_lifetime_minutes * 60,
        leeway_seconds=settings.jwt_leeway_seconds,
    )
    users = UserDirectory(db)
    # A revoked session must be remembered as long as one of its access tokens may be valid.
    sessions = SessionDirectory(
        db, remember_seconds=tokens.lifetime_seconds + tokens.leeway_seconds + 60
    )
    api_keys = ApiKeyDirectory(db)
    session_keys = SessionKeys.from_secret(secret)
    claim_waiters = ClaimWaiters()
    feed = ChangeFeed(db, poll_seconds=settings.change_poll_seconds)
    for listener in (
        users.on_change,
        sessions.on_change,
        api_keys.on_change,
        claim_waiters.on_change,
    ):
        feed.add_listener(listener)
    firer = ScheduleFirer(db)
    feed.add_listener(firer.on_change)
    metrics.feed_lag.set_function(lambda: feed.lag)
    account_policy = AccountPolicy.from_settings(settings)
    return Services(
        settings=settings,
        db=db,
        tokens=tokens,
        passwords=Passwords(
            workers=settings.password_hash_workers,
            queue=settings.password_hash_queue,
            on_busy=metrics.password_hashing_refused.inc,
        ),
        users=users,
        sessions=sessions,
        api_keys=api_keys,
        session_keys=session_keys,
        authenticator=Authenticator(
            settings=settings,
            db=db,
            tokens=tokens,
            users=users,
            sessions=sessions,
            api_keys=api_keys,
            session_keys=session_keys,
            trusts=rate_limits.client_address.is_trusted,
        ),
        metrics=metrics,
        rate_limits=rate_limits,
        feed=feed,
        hub=Hub(
            db=db,
            feed=feed,
            metrics=metrics,
            user_queue_bytes=settings.ws_send_queue_user_bytes,
        ),
        lease_keys=LeaseKeys(secret),
        claim_waiters=claim_waiters,
        list_cache=ListCache(),
        sweeper=lease_sweeper(
            db, interval=settings.lease_sweep_seconds, on_expired=metrics.job_leases_expired.inc
        ),
        pruner=retention_pruner(
            db,
            keep=timedelta(hours=settings.change_retention_hours),
            every_seconds=settings.change_prune_interval_seconds,
            chores=(
                job_retention(db, keep_days=settings.job_retention_days),
                login_failure_retention(db, policy=account_policy),
            ),
        ),
        firer=firer,
        counts=count_folder(db),
        account_policy=account_policy,
        address_failures=AddressFailures(),
    )


def begin_shutdown(app: FastAPI) -> None:
    """The server stops accepting: end what would hold its graceful shutdown up."""
    services = getattr(app.state, "services", None)
    if isinstance(services, Services):
        services.hub.drain()


def add_routes(app: FastAPI, router: APIRouter) -> None:
    """The router's routes, added to the app's own router as they are.

    `include_router` keeps each router as a nested branch that every request walks: with nine
    routers, routing matched each path about six times over and cost a quarter of the CPU of
    an authenticated read. Our routers carry their full paths and no prefix, dependencies or
    settings of their own at inclusion, so their routes need no wrapping.
    """
    app.router.routes.extend(routes_of(router))


def create_app(settings: Settings) -> FastAPI:
    """The ASGI app. The database must already be migrated (`orchestrator db upgrade`)."""
    faults = faults_for(settings)
    register_resource_ids()  # before any route is made: their paths use it
    authenticator: Authenticator | None = None  # the running lifespan's

    def identify(scope: Scope) -> str | None:
        return known_owner(authenticator, scope) if authenticator is not None else None

    metrics = Metrics()
    rate_limits = RateLimits.from_settings(settings, identify=identify, metrics=metrics)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        nonlocal authenticator
        services = build_services(settings, metrics=metrics, rate_limits=rate_limits)
        app.state.services = services
        app.state.authenticator = authenticator = services.authenticator
        try:
            await services.db.ping()  # opens the pool, every connection of it, before serving
            await ensure_admin(services.db, settings, services.passwords)
            await services.passwords.warm_up()
            services.db.faults = faults
            faults.arm()
            async with running(services.background):
                await services.sessions.load()  # after the feed: it delivers what came later
                yield
        finally:
            await services.api_keys.close()
            await services.rate_limits.close()
            services.passwords.close()
            await services.db.close()
            authenticator = None

    app = Application(
        title="Orchestrator",
        version=__version__,
        description="Coordination hub: jobs, collaboration tasks, a live change feed, workers.",
        lifespan=lifespan,
        redirect_slashes=False,
        # Served by install_docs from local assets instead of FastAPI's CDN-backed pages.
        docs_url=None,
        redoc_url=None,
        # We export Prometheus metrics and JSON logs ourselves; FastAPI's OpenTelemetry hooks
        # would otherwise look up the global providers on every request.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    install_error_handlers(app)
    install_openapi(app, authenticating=AUTHENTICATING)

    # Routes are matched in order, one regular expression each: the busiest first. No two
    # paths overlap (ids match only UUIDs), so the order changes nothing else.
    routers = [
        health_router,  # liveness probes are the most frequent of all
        tasks_router,
        jobs_router,
        lease_router,
        schedules_router,
        queues_router,
        changes_router,
        auth_router,
        session_router,
        user_router,
        api_key_router,
        metrics_router,
        console_router,
    ]
    if settings.environment == "test":
        routers.append(test_fault_router)
    for router in routers:
        add_routes(app, router)
    install_docs(app)
    name_plain_routes(app.router.routes)
    index_routes(app.router)

    if faults.enabled:
        app.add_middleware(FaultResponseMiddleware, faults=faults)
    # Each add_middleware wraps the ones before it, so this reads inside-out. From the outside:
    # the edge (request id, access log and metrics, security headers, `Allow` on a 405, the
    # 500 envelope), body limit, JSON content type, CORS (so that 429s are readable
    # cross-origin), rate limits, a rotated session cookie, HEAD served as GET (next to the
    # router, so everything outside still sees HEAD).
    app.add_middleware(HeadAsGetMiddleware)
    app.add_middleware(SessionCookieMiddleware)
    # Layers of features turned off are left out: each costs every request a call.
    if rate_limits.enabled:
        app.add_middleware(
            RateLimitMiddleware, limits=rate_limits, policies=RoutePolicies(app.router.routes)
        )
    if settings.cors_origins:
        app.add_middleware(Cors, settings=settings)
    app.add_middleware(JsonContentTypeMiddleware, form_paths=frozenset({"/auth/session"}))
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(Edge, metrics=metrics, identify=identify)
    return app
