"""`orchestrator users …` and `orchestrator db upgrade` as a user runs them."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from tests.cli_runner import run_cli

pytestmark = pytest.mark.e2e


def test_users_create_list_passwd_disable_enable(tmp_path: Path) -> None:
    env = {"ORCH_DATA_DIR": str(tmp_path / "data")}
    created = run_cli(
        "users", "create", "Alice", "--role", "member", env=env, password="pw-alice-123"
    )
    assert created.returncode == 0, created.stderr
    assert "created Alice (member)" in created.stdout

    duplicate = run_cli("users", "create", "alice", env=env, password="another-pass-1")
    assert duplicate.returncode == 1
    assert "already exists" in duplicate.stderr
    assert "Traceback" not in duplicate.stderr

    weak = run_cli("users", "create", "bob", "--role", "viewer", env=env, password="short")
    assert weak.returncode == 1
    assert "password: 8 to 1024 characters" in weak.stderr

    bad_role = run_cli("users", "create", "bob", "--role", "root", env=env, password="x" * 10)
    assert bad_role.returncode == 2  # argparse: invalid choice

    missing = run_cli("users", "passwd", "nobody", env=env, password="new-password-1")
    assert missing.returncode == 1
    assert "No user 'nobody'" in missing.stderr

    assert run_cli("users", "passwd", "ALICE", env=env, password="new-password-1").returncode == 0
    assert run_cli("users", "disable", "alice", env=env).returncode == 0
    listing = run_cli("users", "list", env=env)
    assert listing.returncode == 0
    [row] = [line.split() for line in listing.stdout.splitlines() if line.startswith("Alice")]
    assert row[1:3] == ["member", "yes"]
    assert row[3].endswith("+00:00")
    assert run_cli("users", "enable", "alice", env=env).returncode == 0
    assert "no" in run_cli("users", "list", env=env).stdout.split("Alice", 1)[1].split()[1]

    with sqlite3.connect(tmp_path / "data" / "orchestrator.db") as conn:
        (password_hash,) = conn.execute("SELECT password_hash FROM users").fetchone()
    conn.close()
    assert password_hash.startswith("$argon2id$")


def test_db_upgrade_creates_the_schema_and_is_repeatable(tmp_path: Path) -> None:
    env = {"ORCH_DATA_DIR": str(tmp_path / "data")}
    for _ in range(2):
        result = run_cli("db", "upgrade", env=env)
        assert result.returncode == 0, result.stderr
    with sqlite3.connect(tmp_path / "data" / "orchestrator.db") as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    conn.close()
    assert {"users", "jobs", "tasks", "revision_counter", "changes"} <= tables


def test_unreachable_database_is_a_clear_error(tmp_path: Path) -> None:
    env = {"ORCH_DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none"}
    result = run_cli("users", "list", env=env)
    assert result.returncode == 1
    assert "cannot reach the database" in result.stderr
    assert "Traceback" not in result.stderr
