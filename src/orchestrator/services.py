"""The per-process objects that routes and background work share, built at start-up."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import HTTPConnection

from orchestrator.auth.api_keys import ApiKeyDirectory
from orchestrator.auth.deps import Authenticator
from orchestrator.auth.passwords import Passwords
from orchestrator.auth.sessions import SessionDirectory, SessionKeys
from orchestrator.auth.throttle import AccountPolicy, AddressFailures
from orchestrator.auth.tokens import TokenService
from orchestrator.auth.users import UserDirectory
from orchestrator.background import Background
from orchestrator.changes.hub import Hub
from orchestrator.config import Settings
from orchestrator.db import Database
from orchestrator.db.feed import ChangeFeed
from orchestrator.db.periodic import Periodic
from orchestrator.http.lists import ListCache
from orchestrator.http.rate_limit import RateLimits
from orchestrator.jobs.leases import LeaseKeys
from orchestrator.jobs.waiters import ClaimWaiters
from orchestrator.observability.metrics import Metrics
from orchestrator.schedules.firer import ScheduleFirer


@dataclass
class Services:
    """Everything a request may need besides itself; `create_app` builds it in the lifespan."""

    settings: Settings
    db: Database
    tokens: TokenService
    passwords: Passwords
    users: UserDirectory
    sessions: SessionDirectory
    api_keys: ApiKeyDirectory
    session_keys: SessionKeys
    authenticator: Authenticator
    metrics: Metrics
    rate_limits: RateLimits
    feed: ChangeFeed
    hub: Hub
    lease_keys: LeaseKeys
    claim_waiters: ClaimWaiters
    list_cache: ListCache
    sweeper: Periodic
    pruner: Periodic
    firer: ScheduleFirer
    counts: Periodic
    account_policy: AccountPolicy
    address_failures: AddressFailures

    @property
    def background(self) -> tuple[Background, ...]:
        """The workers that run beside the requests, in the order they start."""
        return (self.feed, self.hub, self.sweeper, self.pruner, self.firer, self.counts)


def services_of(conn: HTTPConnection) -> Services:
    services: Services = conn.app.state.services
    return services
