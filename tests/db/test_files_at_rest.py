"""Files at rest are private: the data directory 0700, the SQLite files and secrets 0600."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.app import create_app
from orchestrator.services import Services
from tests.cli_runner import run_cli
from tests.support.settings import make_settings
from tests.support.users import make_user


@pytest.fixture
def lax_umask() -> Iterator[None]:
    """The common default umask, under which files are readable by every local user."""
    old = os.umask(0o022)
    yield
    os.umask(old)


def mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


@pytest.mark.usefixtures("lax_umask")
async def test_a_first_start_keeps_its_files_private(
    backend: str, database_url: str, tmp_path: Path
) -> None:
    data = tmp_path / "fresh" / "data"
    # No secret and no admin password: both are generated and kept in the data directory.
    settings = make_settings(database_url, data, secret_key=None, admin_password=None)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        services: Services = app.state.services
        await make_user(services.db, "alice", password=None)
        assert mode(data) == 0o700
        assert mode(data / "secret_key") == 0o600
        assert mode(data / "admin_password") == 0o600
        if backend == "sqlite":
            database = tmp_path / "orchestrator.db"
            for path in (database, Path(f"{database}-wal"), Path(f"{database}-shm")):
                assert mode(path) == 0o600, path


@pytest.mark.usefixtures("lax_umask")
def test_the_cli_creates_a_private_database_and_tightens_an_open_one(tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = {"ORCH_DATA_DIR": str(data)}
    created = run_cli("users", "create", "bob", env=env, password="bob-password-123")
    assert created.returncode == 0, created.stderr
    assert mode(data) == 0o700
    assert mode(data / "orchestrator.db") == 0o600
    # a database left readable by an older version is made private on the next use
    (data / "orchestrator.db").chmod(0o644)
    upgraded = run_cli("db", "upgrade", env=env)
    assert upgraded.returncode == 0, upgraded.stderr
    assert mode(data / "orchestrator.db") == 0o600
