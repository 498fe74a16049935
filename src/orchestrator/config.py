"""Settings: the one place that reads the environment."""

from __future__ import annotations

import ipaddress
import os
import secrets
from pathlib import Path
from typing import Annotated, Literal

import limits
import structlog
from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

log = structlog.get_logger(__name__)

# Secrets that appear in tutorials and templates; production refuses them.
KNOWN_DEFAULT_SECRETS = frozenset(
    {
        "changeme",
        "change-me",
        "changethis",
        "secret",
        "secret-key",
        "your-secret-key",
        "your-secret-key-here",
        "supersecret",
        "dev-secret",
        "development-secret-key-change-in-production-0000",
        "insecure-dev-secret-key-do-not-use-in-production",
    }
)
KNOWN_DEFAULT_PASSWORDS = frozenset(
    {"admin", "administrator", "password", "changeme", "change-me", "secret", "orchestrator"}
)
MIN_SECRET_BYTES = 32
SECRET_FILE = "secret_key"


def _split_csv(value: object) -> object:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class Settings(BaseSettings):
    """Every knob of the service, read from `ORCH_*` environment variables."""

    model_config = SettingsConfigDict(
        env_prefix="ORCH_", extra="ignore", frozen=True, use_attribute_docstrings=True
    )

    environment: Literal["development", "production", "test"] = "development"
    """`production` refuses unsafe settings; `development` generates a missing secret."""
    host: str = "127.0.0.1"
    """Address `orchestrator serve` listens on."""
    port: int = Field(default=8000, ge=0, le=65535)
    """Port `orchestrator serve` listens on."""
    data_dir: Path = Path("data")
    """Directory (0700) for the SQLite files, the generated secret and admin password (0600)."""
    database_url: str | None = None
    """`sqlite:///path` or `postgresql://user@host/db`; default: a SQLite file in the data dir."""
    secret_key: SecretStr | None = None
    """JWT signing key, 32 bytes or more; required in production."""
    jwt_algorithm: Literal["HS256", "HS384", "HS512"] = "HS256"
    """The one algorithm tokens are signed and verified with."""
    jwt_issuer: str = "orchestrator"
    """`iss` claim, matched exactly."""
    jwt_audience: str = "orchestrator-api"
    """`aud` claim, matched exactly."""
    jwt_leeway_seconds: int = Field(default=10, ge=0, le=30)
    """Clock skew tolerated on `exp` and `iat` (at most 30)."""
    token_lifetime_minutes: int = Field(default=30, ge=1, le=24 * 60)
    """How long an access token is valid."""
    refresh_idle_days: float = Field(default=14.0, gt=0, le=365)
    """A refresh token (or browser session) unused this long expires."""
    session_max_days: float = Field(default=30.0, gt=0, le=365)
    """A session ends this long after sign-in, however it is used."""
    refresh_reuse_grace_seconds: float = Field(default=5.0, ge=0, le=60)
    """A used-up refresh token shown again this soon gets its successor again, not a revocation."""
    session_cookie_rotate_minutes: float = Field(default=15.0, gt=0, le=24 * 60)
    """How often a browser's session cookie is replaced by a new one (rotation)."""
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """Comma-separated origins allowed to call the API from a browser."""
    cors_allow_credentials: bool = False
    """Let browsers send credentials cross-origin (never with a `*` origin in production)."""
    orch_id: str = Field(default="main", pattern=r"^[A-Za-z0-9._-]{1,64}$")
    """Name of this instance, in logs and the development log file name."""
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    """Lowest level logged."""
    admin_password: SecretStr | None = None
    """Password of the `admin` created on the first start (otherwise a random one, printed once)."""
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    """Largest request body accepted; larger ones get 413."""
    change_poll_seconds: float = Field(default=1.0, gt=0, le=60)
    """How often the change log is polled for other processes' writes."""
    change_retention_hours: float = Field(default=24.0, gt=0)
    """How long change-log entries are kept for resuming clients."""
    db_timeout_seconds: float = Field(default=1.5, gt=0, le=60)
    """Bound on connecting to and querying PostgreSQL (and on the `/healthz` probe)."""
    db_pool_size: int = Field(default=10, ge=1, le=1000)
    """PostgreSQL connections each process opens at start and keeps for its requests."""
    lease_sweep_seconds: float = Field(default=2.0, gt=0, le=300)
    """How often each process returns jobs whose lease expired."""
    retry_backoff_seconds: float = Field(default=2.0, ge=0, le=3600)
    """Base of a failed job's retry delay: base * 2^(attempt-1)."""
    retry_backoff_max_seconds: float = Field(default=300.0, ge=0, le=86400)
    """Cap on a failed job's retry delay."""
    ws_max_connections_per_user: int = Field(default=20, ge=1)
    """WebSocket connections per user and process; one more is closed with 1008."""
    ws_max_messages_per_second: float = Field(default=20.0, gt=0)
    """Messages a WebSocket client may send per second; faster is closed with 1008."""
    ws_send_queue_frames: int = Field(default=10_000, ge=1)
    """Frames queued for a slow WebSocket client before it is disconnected."""
    ws_send_queue_bytes: int = Field(default=4 * 1024 * 1024, ge=64 * 1024)
    """Bytes queued for one slow WebSocket or SSE client before it is disconnected (1013)."""
    ws_send_queue_user_bytes: int = Field(default=16 * 1024 * 1024, ge=64 * 1024)
    """Bytes queued for all of one user's connections (in one process) before one is closed."""
    ws_ping_interval_seconds: float = Field(default=20.0, gt=0, le=3600)
    """How often the server pings each WebSocket client."""
    ws_ping_timeout_seconds: float = Field(default=20.0, gt=0, le=3600)
    """How long a ping may go unanswered before the connection is closed (1011)."""
    http_max_header_bytes: int = Field(default=64 * 1024, ge=1024, le=1024 * 1024)
    """Largest request head (request line and headers); a larger one gets 431 and a close."""
    http_header_timeout_seconds: float = Field(default=10.0, gt=0, le=3600)
    """Time from a request's first byte to the end of its headers; slower gets 408 and a close."""
    http_body_timeout_seconds: float = Field(default=30.0, gt=0, le=3600)
    """Time from a request's headers to the end of its body; slower is disconnected."""
    http_keep_alive_seconds: int = Field(default=5, ge=1, le=3600)
    """How long a connection may sit idle before and between requests before it is closed."""
    change_prune_interval_seconds: float = Field(default=300.0, gt=0)
    """How often change-log entries older than the retention are pruned (and finished jobs)."""
    job_retention_days: int = Field(default=7, ge=0, le=36_500)
    """Finished jobs older than this many days are deleted in small batches (0 keeps them)."""
    rate_limit_enabled: bool = True
    """Rate limits on (`N/second`, `N/minute` or `N/hour` each); counters in Redis if set."""
    rate_limit_login: str = "5/minute"
    """Login attempts per username from one client address."""
    rate_limit_login_ip: str = "20/minute"
    """Login attempts per client address."""
    rate_limit_writes: str = "120/minute"
    """Writes per user with a valid token, else per client address."""
    rate_limit_reads: str = "600/minute"
    """Reads per user with a valid token, else per client address."""
    rate_limit_ws_connect: str = "30/minute"
    """WebSocket connections per user with a valid token, else per client address."""
    rate_limit_workers: str = "6000/minute"
    """Worker calls (claim, heartbeat, complete, fail, release, report) per user (as for reads)."""
    rate_limit_account_failures: int = Field(default=5, ge=1, le=10_000)
    """Failed logins per account (from any addresses) before each further one waits."""
    rate_limit_account_delay_seconds: float = Field(default=1.0, gt=0, le=86_400)
    """Wait after one failure more than that; it doubles with each further failure."""
    rate_limit_account_max_delay_seconds: float = Field(default=900.0, gt=0, le=86_400)
    """Longest wait between attempts at one account."""
    rate_limit_account_window_seconds: float = Field(default=3600.0, gt=0, le=30 * 86_400)
    """An account's failures are forgotten this long after its last one, or at a login."""
    password_hash_workers: int | None = Field(default=None, ge=1, le=256)
    """Passwords hashed at once (threads); by default one per CPU."""
    password_hash_queue: int = Field(default=4, ge=0, le=10_000)
    """Logins waiting for a hashing thread; more at once get 503 with Retry-After."""
    claim_max_wait_seconds: float = Field(default=30.0, ge=0, le=30)
    """Longest a claim waits for work; a longer `wait` is shortened to it."""
    redis_url: SecretStr | None = None
    """Redis for rate-limit counters shared by every process (otherwise per process)."""
    redis_key_prefix: str = Field(default="orch", pattern=r"^[A-Za-z0-9._:-]{1,64}$")
    """Prefix of this instance's Redis keys."""
    trusted_proxies: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """Comma-separated proxies (addresses or networks) whose forwarding header is believed."""
    forwarded_header: Literal["x-forwarded-for", "forwarded"] = "x-forwarded-for"
    """Header trusted proxies name the client in: `x-forwarded-for` or `forwarded` (RFC 7239)."""
    metrics_token: SecretStr | None = None
    """When set, `/metrics` needs `Authorization: Bearer <token>`."""
    # Crash tests only (ignored unless environment is "test"): see orchestrator.faults.
    fault_point: str | None = None
    """Test environment only: the named point where the process kills itself (crash tests)."""
    fault_after: int = Field(default=0, ge=0)
    """Test environment only: how many passes of the fault point to let through first."""
    fault_probability: float | None = Field(default=None, ge=0, le=1)
    """Test environment only: kill at each pass with this probability instead."""
    fault_seed: int = 0
    """Test environment only: seed of the random kills."""

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _parse_origins(cls, value: object) -> object:
        return _split_csv(value)

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _parse_proxies(cls, value: object) -> object:
        return _split_csv(value)

    @field_validator("trusted_proxies")
    @classmethod
    def _check_proxies(cls, value: list[str]) -> list[str]:
        for entry in value:
            ipaddress.ip_network(entry, strict=False)
        return value

    @field_validator(
        "rate_limit_login",
        "rate_limit_login_ip",
        "rate_limit_writes",
        "rate_limit_reads",
        "rate_limit_ws_connect",
        "rate_limit_workers",
    )
    @classmethod
    def _check_rate(cls, value: str) -> str:
        try:
            limits.parse(value)
        except ValueError:
            raise ValueError(f"not a rate limit such as '5/minute': {value!r}") from None
        return value

    @field_validator("forwarded_header", mode="before")
    @classmethod
    def _lower_header(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _refuse_unsafe_production(self) -> Settings:
        if self.environment != "production":
            return self
        secret = self.secret_key.get_secret_value() if self.secret_key else ""
        if not secret:
            raise ValueError("ORCH_SECRET_KEY is required in production")
        if len(secret.encode()) < MIN_SECRET_BYTES:
            raise ValueError(f"ORCH_SECRET_KEY must be at least {MIN_SECRET_BYTES} bytes")
        if secret.lower() in KNOWN_DEFAULT_SECRETS:
            raise ValueError("ORCH_SECRET_KEY is a known default; generate a random one")
        admin = self.admin_password.get_secret_value() if self.admin_password else ""
        if admin and (admin.lower() in KNOWN_DEFAULT_PASSWORDS or len(admin) < 12):
            raise ValueError("ORCH_ADMIN_PASSWORD is too weak for production")
        if "*" in self.cors_origins and self.cors_allow_credentials:
            raise ValueError("a wildcard CORS origin cannot be combined with credentials")
        return self

    @property
    def resolved_database_url(self) -> str:
        """The configured URL, or the embedded SQLite file in the data directory."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'orchestrator.db').resolve()}"

    @property
    def is_development(self) -> bool:
        return self.environment != "production"


def describe_invalid(exc: ValidationError) -> str:
    """What is wrong, naming each setting and never showing a value (it may be a secret)."""
    problems = []
    for error in exc.errors(include_url=False, include_input=False, include_context=False):
        message = str(error["msg"]).removeprefix("Value error, ")
        if error["loc"]:
            message = f"ORCH_{str(error['loc'][0]).upper()}: {message}"
        problems.append(message)
    return "; ".join(problems)


def load_secret_key(settings: Settings) -> str:
    """The signing key: configured, or (outside production) generated once and kept on disk."""
    if settings.secret_key is not None and settings.secret_key.get_secret_value():
        return settings.secret_key.get_secret_value()
    settings.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = settings.data_dir / SECRET_FILE
    if path.exists():
        return path.read_text().strip()
    # Write aside and link into place, so that concurrent first starts agree on one key.
    tmp = path.with_name(f".{SECRET_FILE}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(secrets.token_urlsafe(48))
    try:
        os.link(tmp, path)
        log.warning(
            "generated_secret_key", path=str(path), hint="set ORCH_SECRET_KEY in production"
        )
    except FileExistsError:
        pass
    finally:
        tmp.unlink()
    return path.read_text().strip()


class WorkerSettings(BaseSettings):
    """What `orchestrator worker`, a client of a server, reads from the environment."""

    model_config = SettingsConfigDict(
        env_prefix="ORCH_", extra="ignore", frozen=True, use_attribute_docstrings=True
    )

    url: str | None = None
    """The server the worker claims jobs from; default: where `orchestrator serve` listens."""
    host: str = Settings.model_fields["host"].default
    """The address `orchestrator serve` listens on (the worker's default server)."""
    port: int = Field(default=Settings.model_fields["port"].default, ge=0, le=65535)
    """The port `orchestrator serve` listens on (the worker's default server)."""
    api_key: SecretStr | None = None
    """An API key of the worker's account; used instead of a username and password."""
    username: str | None = None
    """The worker's account (role `worker`)."""
    password: SecretStr | None = None
    """Its password; otherwise `--password-file` or standard input."""
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    """Lowest level the worker logs (INFO: a line per job claimed and finished)."""

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @property
    def server_url(self) -> str:
        """`url`, else the address `orchestrator serve` uses with the same environment."""
        if self.url:
            return self.url.rstrip("/")
        # A server listening on every address is reached on loopback.
        everywhere = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}  # noqa: S104
        host = everywhere.get(self.host, self.host)
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"
