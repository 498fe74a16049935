"""`orchestrator`: serve, manage users and API keys, migrate the database, run a worker."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import getpass
import importlib
import logging
import os
import signal
import socket
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

from pydantic import ValidationError
from pydantic_settings import BaseSettings

from orchestrator.auth.api_keys import (
    DEFAULT_DAYS,
    ApiKey,
    check_new_key,
    create_api_key,
    list_api_keys,
    revoke_api_key,
)
from orchestrator.auth.passwords import Passwords
from orchestrator.auth.users import (
    ROLES,
    Role,
    check_new_credentials,
    check_new_password,
    create_user,
    get_user,
    list_users,
    set_disabled,
    set_password,
)
from orchestrator.config import Settings, WorkerSettings, describe_invalid
from orchestrator.db import Database, DatabaseUnavailable, open_database
from orchestrator.db.migrate import upgrade
from orchestrator.errors import ApiError, NotFound

if TYPE_CHECKING:
    from orchestrator.client import AsyncClient

T = TypeVar("T")
S = TypeVar("S", bound=BaseSettings)

# How `serve` runs uvicorn (the benchmark's reference app uses the same; `serve` adds the bounds
# of `server_options`, so that the reference stays plain httptools). uvloop and httptools
# come with uvicorn[standard]; naming them makes a missing one fail loudly instead of silently
# falling back to the slower asyncio loop and h11 parser.
UVICORN_OPTIONS: dict[str, Any] = {
    "loop": "uvloop",
    "http": "httptools",
    "access_log": False,
    "server_header": False,
    "log_config": None,
    "ws_max_size": 64 * 1024,
    # Change frames are small, and permessage-deflate compresses each frame once per
    # connection: fanning one change out to 1,000 subscribers cost 1,000 compressions.
    "ws_per_message_deflate": False,
    "timeout_graceful_shutdown": 10,
    "proxy_headers": False,
}


def _load(kind: type[S]) -> S:
    try:
        return kind()
    except ValidationError as exc:
        sys.exit(f"orchestrator: invalid settings: {describe_invalid(exc)}")


def _settings() -> Settings:
    return _load(Settings)


def _with_db(settings: Settings, work: Callable[[Database], Awaitable[T]]) -> T:
    """Run `work` on the (migrated) database; a clear message instead of a traceback."""
    url = settings.resolved_database_url
    try:
        upgrade(url)  # a no-op at the newest schema; lets the CLI run before the first start
    except Exception as exc:
        sys.exit(f"orchestrator: cannot reach the database: {type(exc).__name__}")

    async def run() -> T:
        db = open_database(settings.resolved_database_url, timeout=settings.db_timeout_seconds)
        try:
            return await work(db)
        finally:
            await db.close()

    try:
        return asyncio.run(run())
    except ApiError as exc:
        sys.exit(f"orchestrator: {exc.message}")
    except DatabaseUnavailable as exc:
        sys.exit(f"orchestrator: the database is unavailable ({exc}); try again")


def _fail(exc: ApiError) -> NoReturn:
    details = getattr(exc, "details", [])
    reasons = "; ".join(f"{d['field']}: {d['reason']}" for d in details)
    sys.exit(f"orchestrator: {reasons or exc.message}")


def _read_password(confirm: bool) -> str:
    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\r\n")
    password = getpass.getpass("Password: ")
    if confirm and getpass.getpass("Repeat password: ") != password:
        sys.exit("orchestrator: passwords do not match")
    return password


def cmd_serve(args: argparse.Namespace) -> None:
    import uvicorn

    from orchestrator.app import begin_shutdown, create_app
    from orchestrator.observability.logging import configure_logging

    settings = _settings()
    configure_logging(settings)
    upgrade(settings.resolved_database_url)
    app = create_app(settings)
    tune_garbage_collector()
    config = uvicorn.Config(
        app,
        host=args.host or settings.host,
        port=args.port if args.port is not None else settings.port,
        **server_options(settings),
    )

    class Server(uvicorn.Server):
        async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
            # uvicorn waits for every response to finish, and an event stream never does.
            begin_shutdown(app)
            await super().shutdown(sockets)

    server = Server(config)
    with contextlib.suppress(KeyboardInterrupt):
        server.run()
    if not server.started:
        sys.exit(3)  # as uvicorn.run: the application did not start


def server_options(settings: Settings) -> dict[str, Any]:
    """`UVICORN_OPTIONS` with the settings' bounds on connections and their protocol."""
    from orchestrator.http.protocol import BoundedHttpProtocol, QuietWebSocketProtocol

    return {
        **UVICORN_OPTIONS,
        "http": BoundedHttpProtocol.configured(
            max_head_bytes=settings.http_max_header_bytes,
            head_timeout=settings.http_header_timeout_seconds,
            body_timeout=settings.http_body_timeout_seconds,
        ),
        "ws": QuietWebSocketProtocol,
        "timeout_keep_alive": settings.http_keep_alive_seconds,
        "ws_ping_interval": settings.ws_ping_interval_seconds,
        "ws_ping_timeout": settings.ws_ping_timeout_seconds,
    }


# CPython's default young-generation threshold (700) promotes the short-lived objects of a busy
# fan-out (futures, handles, queued frames) to the oldest generation, whose full collection then
# scans every object of every open connection: about 200 ms with 1,000 WebSocket subscribers,
# every few seconds, which is the whole p99 of `bench/ws_fanout.py`. A larger young generation
# lets those objects die young; freezing what start-up built keeps it out of every full scan.
GC_YOUNG_THRESHOLD = 10_000


def tune_garbage_collector() -> None:
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, older, oldest)


def cmd_db_upgrade(_args: argparse.Namespace) -> None:
    upgrade(_settings().resolved_database_url)
    print("database is at the newest schema")


def cmd_users_create(args: argparse.Namespace) -> None:
    settings = _settings()
    password = _read_password(confirm=True)
    role: Role = args.role
    try:
        check_new_credentials(username=args.name, password=password, role=role)
    except ApiError as exc:
        _fail(exc)
    password_hash = Passwords().hash_sync(password)
    _with_db(
        settings,
        lambda db: create_user(db, username=args.name, password_hash=password_hash, role=role),
    )
    print(f"created {args.name} ({role})")


def cmd_users_list(_args: argparse.Namespace) -> None:
    settings = _settings()
    users = _with_db(settings, list_users)
    print(f"{'USERNAME':<32} {'ROLE':<8} {'DISABLED':<8} CREATED")
    for user in users:
        print(
            f"{user.username:<32} {user.role:<8} {'yes' if user.disabled else 'no':<8} "
            f"{user.created_at.isoformat(timespec='seconds')}"
        )


def cmd_users_passwd(args: argparse.Namespace) -> None:
    settings = _settings()
    password = _read_password(confirm=True)
    try:
        check_new_password(password)
    except ApiError as exc:
        _fail(exc)
    password_hash = Passwords().hash_sync(password)
    _with_db(settings, lambda db: set_password(db, username=args.name, password_hash=password_hash))
    print(f"password changed for {args.name}; their existing tokens no longer work")


def cmd_users_disable(args: argparse.Namespace) -> None:
    settings = _settings()
    _with_db(settings, lambda db: set_disabled(db, username=args.name, disabled=True))
    print(f"disabled {args.name}; their existing tokens no longer work")


def cmd_users_enable(args: argparse.Namespace) -> None:
    settings = _settings()
    _with_db(settings, lambda db: set_disabled(db, username=args.name, disabled=False))
    print(f"enabled {args.name}")


def cmd_api_keys_create(args: argparse.Namespace) -> None:
    settings = _settings()
    try:
        check_new_key(name=args.name, expires_in_days=args.expires_days)
    except ApiError as exc:
        _fail(exc)

    async def create(db: Database) -> tuple[ApiKey, str]:
        user = await get_user(db, username=args.username)
        if user is None:
            raise NotFound(f"No user {args.username!r}")
        return await create_api_key(
            db,
            user_id=user.id,
            username=user.username,
            name=args.name,
            read_only=args.read_only,
            expires_in_days=args.expires_days,
        )

    key, secret = _with_db(settings, create)
    # The key alone on standard output (for `ORCH_API_KEY=$(…)`), what it is on standard error.
    print(secret)
    print(
        f"created API key {key.id} ({key.name!r}) for {key.username}"
        f"{', read-only' if key.read_only else ''}, expires "
        f"{key.expires_at.isoformat(timespec='seconds')}; it is shown only now",
        file=sys.stderr,
    )


def cmd_api_keys_list(args: argparse.Namespace) -> None:
    settings = _settings()

    async def keys(db: Database) -> list[ApiKey]:
        if args.username is None:
            return await list_api_keys(db, user_id=None)
        user = await get_user(db, username=args.username)
        if user is None:
            raise NotFound(f"No user {args.username!r}")
        return await list_api_keys(db, user_id=user.id)

    found = _with_db(settings, keys)
    print(
        f"{'ID':<36} {'USERNAME':<20} {'NAME':<20} {'PREFIX':<14} {'ACCESS':<10} "
        f"{'EXPIRES':<25} LAST USED"
    )
    for key in found:
        last_used = key.last_used_at.isoformat(timespec="minutes") if key.last_used_at else "-"
        print(
            f"{key.id:<36} {key.username:<20} {key.name:<20} {key.prefix:<14} "
            f"{'read-only' if key.read_only else 'read-write':<10} "
            f"{key.expires_at.isoformat(timespec='seconds'):<25} {last_used}"
        )


def cmd_api_keys_revoke(args: argparse.Namespace) -> None:
    settings = _settings()
    _with_db(settings, lambda db: revoke_api_key(db, key_id=args.id, user_id=None))
    print(f"revoked API key {args.id}; every server refuses it within seconds")


def _handler(spec: str) -> Callable[..., object]:
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        sys.exit("orchestrator: --handler must look like module:function")
    # Like uvicorn: a module next to where the command runs is importable.
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        handler = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as exc:
        sys.exit(f"orchestrator: cannot load handler {spec}: {exc}")
    if not callable(handler):
        sys.exit(f"orchestrator: handler {spec} is not callable")
    return handler  # type: ignore[no-any-return]


def _stopped_before_start(signum: int, frame: object) -> NoReturn:
    """SIGTERM or SIGINT before the worker claims anything: nothing to settle, a clean exit."""
    raise SystemExit(0)


_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def cmd_worker(args: argparse.Namespace) -> None:
    # A stop asked for while the worker still loads, reads its password or logs in ends it
    # at once with status 0, as one asked for while it works ends it gracefully.
    for sig in _STOP_SIGNALS:
        signal.signal(sig, _stopped_before_start)
    from orchestrator.client import AsyncClient, Worker, WorkerStopped

    # The worker is a client of a server: it reads the client's variables, not the server's.
    client_settings = _load(WorkerSettings)
    url = (args.url or client_settings.server_url).rstrip("/")
    api_key = client_settings.api_key.get_secret_value() if client_settings.api_key else None
    username = args.username or client_settings.username
    password: str | None = None
    if api_key is None:
        if not username:
            sys.exit("orchestrator: give ORCH_API_KEY, or --username or ORCH_USERNAME")
        password = client_settings.password.get_secret_value() if client_settings.password else None
        if args.password_file:
            password = args.password_file.read_text().strip()
        if password is None:
            password = _read_password(confirm=False)
    handler = _handler(args.handler)
    logging.basicConfig(
        level=client_settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)
    job_log_level: int | None = None
    if args.job_log_level is not None:
        job_log_level = logging.getLevelName(args.job_log_level)
        root = logging.getLogger()
        if job_log_level < root.getEffectiveLevel():
            # Records for the job's log only: the worker's own output stays at its level.
            for output in root.handlers:
                output.setLevel(root.getEffectiveLevel())
            root.setLevel(job_log_level)

    async def run() -> Worker | None:
        async with AsyncClient(url, api_key=api_key) as client:
            running = asyncio.current_task()
            assert running is not None
            stop_asked = False

            def stop() -> None:
                nonlocal stop_asked
                stop_asked = True
                running.cancel()

            loop = asyncio.get_running_loop()
            for sig in _STOP_SIGNALS:
                loop.add_signal_handler(sig, stop)
            try:
                await _worker_login(client, url, username, password)
            except asyncio.CancelledError:
                if not stop_asked:
                    raise
                return None
            # From here `Worker.run` handles the signals (no await comes in between).
            worker = Worker(
                client,
                args.queue or ["default"],
                handler,
                concurrency=args.concurrency,
                lease_seconds=args.lease_seconds,
                wait=args.wait,
                name=args.name,
                shutdown_grace=args.grace,
                job_log_level=job_log_level,
            )
            try:
                await worker.run()
            except WorkerStopped as exc:
                sys.exit(f"orchestrator: worker stopped: {exc}")
            return worker

    worker = asyncio.run(run())
    if worker is None:
        return
    # The collections of interpreter shutdown walk every object of the ~900 modules loaded
    # (0.3-1 s on a busy machine); an idle worker told to stop should be gone at once.
    # Frozen objects are left out of them; atexit handlers still run.
    gc.freeze()
    if worker.handlers_running:
        # Their jobs were released; a plain function cannot be interrupted, and waiting for
        # its thread at exit would outlast --grace.
        logging.getLogger(__name__).info(
            "exiting with %d handler thread(s) still running", worker.handlers_running
        )
        logging.shutdown()
        sys.stdout.flush()
        os._exit(0)


async def _worker_login(
    client: AsyncClient, url: str, username: str | None, password: str | None
) -> None:
    """Log in (or check the API key), or exit with one line saying why not; waits out 429
    and 503 (Retry-After)."""
    import httpx

    from orchestrator.client import ApiError as RefusedError
    from orchestrator.client.worker import describe

    said = False
    while True:
        try:
            if username is None or password is None:
                await client.me()  # the key: refused here rather than at the first claim
            else:
                await client.login(username, password)
            return
        except RefusedError as exc:
            if not exc.transient:
                who = f"login as {username}" if password is not None else "the API key"
                sys.exit(f"orchestrator: {who} at {url} failed: {describe(exc)}")
            delay = exc.retry_after if exc.retry_after is not None else 1.0
            if not said:
                logging.getLogger(__name__).warning(
                    "login at %s: %s; retrying in %.0fs", url, describe(exc), delay
                )
                said = True
            await asyncio.sleep(delay)
        except httpx.TransportError as exc:
            sys.exit(f"orchestrator: no server at {url}: {describe(exc)}")
        except ValueError:  # an answer that is not the API's JSON
            sys.exit(f"orchestrator: {url} does not answer like an orchestrator server")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="orchestrator", description=__doc__)
    verbs = parser.add_subparsers(dest="verb", required=True)

    serve = verbs.add_parser("serve", help="migrate the database and serve HTTP and WebSocket")
    serve.add_argument("--host", help="overrides ORCH_HOST")
    serve.add_argument("--port", type=int, help="overrides ORCH_PORT")
    serve.set_defaults(func=cmd_serve)

    db = verbs.add_parser("db", help="database schema").add_subparsers(
        dest="db_verb", required=True
    )
    db.add_parser("upgrade", help="apply pending migrations").set_defaults(func=cmd_db_upgrade)

    users = verbs.add_parser("users", help="manage users").add_subparsers(
        dest="users_verb", required=True
    )
    create = users.add_parser("create", help="create a user (password from the prompt or stdin)")
    create.add_argument("name")
    create.add_argument("--role", choices=ROLES, default="member")
    create.set_defaults(func=cmd_users_create)
    users.add_parser("list", help="list users").set_defaults(func=cmd_users_list)
    for verb, func, text in (
        ("passwd", cmd_users_passwd, "set a password (prompt or stdin); revokes tokens"),
        ("disable", cmd_users_disable, "disable a user; revokes tokens"),
        ("enable", cmd_users_enable, "enable a disabled user"),
    ):
        sub = users.add_parser(verb, help=text)
        sub.add_argument("name")
        sub.set_defaults(func=func)

    keys = verbs.add_parser("api-keys", help="manage API keys").add_subparsers(
        dest="api_keys_verb", required=True
    )
    create_key = keys.add_parser(
        "create", help="make an API key for a user; prints the key (shown only this once)"
    )
    create_key.add_argument("username")
    create_key.add_argument("--name", required=True, help="what the key is for")
    create_key.add_argument(
        "--read-only", action="store_true", help="only GET and HEAD (and the feeds)"
    )
    create_key.add_argument(
        "--expires-days",
        type=int,
        default=DEFAULT_DAYS,
        help=f"days until it expires, 1 to 730 (default {DEFAULT_DAYS})",
    )
    create_key.set_defaults(func=cmd_api_keys_create)
    list_keys = keys.add_parser("list", help="list API keys (everyone's, or one user's)")
    list_keys.add_argument("username", nargs="?")
    list_keys.set_defaults(func=cmd_api_keys_list)
    revoke_key = keys.add_parser("revoke", help="revoke an API key by its id")
    revoke_key.add_argument("id")
    revoke_key.set_defaults(func=cmd_api_keys_revoke)

    worker = verbs.add_parser(
        "worker",
        help="run jobs with a handler against a server",
        description="Claim jobs of the queues, run HANDLER(job) and report the outcome. "
        "Credentials: an API key in ORCH_API_KEY, or --username (ORCH_USERNAME) with the "
        "password from ORCH_PASSWORD, --password-file, or the prompt/stdin. "
        "The server: --url, else ORCH_URL, else the "
        "address `orchestrator serve` uses (ORCH_HOST, ORCH_PORT). Errors no retry can fix "
        "(no server at start-up, 401, 403) stop it with exit status 1; SIGTERM stops it "
        "gracefully.",
    )
    worker.add_argument("--queue", action="append", help="queue to take jobs from (repeatable)")
    worker.add_argument("--handler", required=True, help="module:function called with each job")
    worker.add_argument("--concurrency", type=int, default=1, help="jobs run at once")
    worker.add_argument(
        "--url", help="server URL (default: ORCH_URL, else http://ORCH_HOST:ORCH_PORT)"
    )
    worker.add_argument("--username", help="a user with the worker or admin role")
    worker.add_argument("--password-file", type=Path, help="file holding the password")
    worker.add_argument("--name", help="worker name shown on its jobs (default host:pid)")
    worker.add_argument("--lease-seconds", type=float, default=30, help="lease per claim")
    worker.add_argument("--wait", type=float, default=10, help="seconds a claim waits for work")
    worker.add_argument("--grace", type=float, default=30, help="seconds to finish at SIGTERM")
    worker.add_argument(
        "--job-log-level",
        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
        help="send the handlers' logging records of this level or above to their job's log",
    )
    worker.set_defaults(func=cmd_worker)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    args.func(args)
