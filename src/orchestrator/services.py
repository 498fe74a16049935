"""The per-process objects that routes and background tasks share."""

from __future__ import annotations

from dataclasses import dataclass, field

from orchestrator.auth.api_keys import ApiKeyDirectory
from orchestrator.auth.passwords import Passwords
from orchestrator.auth.sessions import SessionDirectory, SessionKeys
from orchestrator.auth.tokens import TokenService
from orchestrator.auth.users import UserDirectory
from orchestrator.config import Settings
from orchestrator.db import Database
from orchestrator.db.feed import ChangeFeed
from orchestrator.http.rate_limit import RateLimits
from orchestrator.observability.metrics import Metrics


@dataclass
class Services:
    settings: Settings
    db: Database
    tokens: TokenService
    passwords: Passwords
    users: UserDirectory
    sessions: SessionDirectory
    api_keys: ApiKeyDirectory
    session_keys: SessionKeys
    feed: ChangeFeed
    metrics: Metrics = field(default_factory=Metrics)
    rate_limits: RateLimits = field(default_factory=RateLimits.disabled)
    extras: dict[str, object] = field(default_factory=dict)
