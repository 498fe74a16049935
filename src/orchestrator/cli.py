"""`orchestrator`: serve, manage users, migrate the database."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, NoReturn, TypeVar

from orchestrator.auth.passwords import Passwords
from orchestrator.auth.users import (
    ROLES,
    Role,
    check_new_credentials,
    check_new_password,
    create_user,
    list_users,
    set_disabled,
    set_password,
)
from orchestrator.config import Settings
from orchestrator.db import Database, DatabaseUnavailable, open_database
from orchestrator.db.migrate import upgrade
from orchestrator.errors import ApiError

T = TypeVar("T")

# How `serve` runs uvicorn (the benchmark's reference app uses the same). uvloop and httptools
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


def _settings() -> Settings:
    try:
        return Settings()
    except ValueError as exc:
        sys.exit(f"orchestrator: invalid settings: {exc}")


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

    from orchestrator.app import create_app
    from orchestrator.observability.logging import configure_logging

    settings = _settings()
    configure_logging(settings)
    upgrade(settings.resolved_database_url)
    uvicorn.run(
        create_app(settings),
        host=args.host or settings.host,
        port=args.port if args.port is not None else settings.port,
        **UVICORN_OPTIONS,
    )


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
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    args.func(args)
