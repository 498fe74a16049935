"""The first start with no users creates `admin`."""

from __future__ import annotations

import os
import secrets
import sys

import structlog

from orchestrator.auth.passwords import Passwords
from orchestrator.auth.users import count_users, create_user
from orchestrator.config import Settings
from orchestrator.db import Database
from orchestrator.errors import Conflict

log = structlog.get_logger(__name__)
ADMIN_PASSWORD_FILE = "admin_password"


async def ensure_admin(db: Database, settings: Settings, passwords: Passwords) -> None:
    """Create `admin` when there are no users: `ORCH_ADMIN_PASSWORD`, or a random one shown once."""
    if await count_users(db) > 0:
        return
    configured = settings.admin_password.get_secret_value() if settings.admin_password else ""
    password = configured or secrets.token_urlsafe(18)
    try:
        await create_user(
            db, username="admin", password_hash=await passwords.hash(password), role="admin"
        )
    except Conflict:
        return  # another process got there first
    if configured:
        log.info("bootstrap_admin_created", username="admin", password_source="ORCH_ADMIN_PASSWORD")
        return
    settings.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = settings.data_dir / ADMIN_PASSWORD_FILE
    path.unlink(missing_ok=True)  # a left-over file would keep its old, maybe wider, mode
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(password + "\n")
    log.info("bootstrap_admin_created", username="admin", password_file=str(path))
    # Deliberately not a log line: the password is shown once, on the terminal only.
    print(
        f"\n  Created the first user: admin / {password}\n"
        f"  (also saved, readable only by you, in {path})\n",
        file=sys.stderr,
        flush=True,
    )
