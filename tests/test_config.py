"""Settings: unsafe production settings refused, the development secret, no environment reads."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from orchestrator.config import Settings, load_secret_key

SRC = Path(__file__).resolve().parents[1] / "src" / "orchestrator"
GOOD_SECRET = "d8f7a6c5b4e3f2a1d8f7a6c5b4e3f2a1-prod"


@pytest.mark.parametrize(
    ("secret", "reason"),
    [
        (None, "required"),
        ("", "required"),
        ("short-secret", "at least 32 bytes"),
        ("x" * 31, "at least 32 bytes"),
        ("development-secret-key-change-in-production-0000", "known default"),
        ("INSECURE-DEV-SECRET-KEY-DO-NOT-USE-IN-PRODUCTION", "known default"),
    ],
)
def test_production_refuses_a_missing_short_or_default_secret(
    secret: str | None, reason: str
) -> None:
    with pytest.raises(ValidationError, match=reason):
        Settings(environment="production", secret_key=secret)


def test_production_refuses_wildcard_cors_with_credentials_and_weak_admin_password() -> None:
    with pytest.raises(ValidationError, match="wildcard"):
        Settings(
            environment="production",
            secret_key=GOOD_SECRET,
            cors_origins=["*"],
            cors_allow_credentials=True,
        )
    with pytest.raises(ValidationError, match="too weak"):
        Settings(environment="production", secret_key=GOOD_SECRET, admin_password="admin")
    ok = Settings(environment="production", secret_key=GOOD_SECRET, cors_origins=["*"])
    assert ok.cors_origins == ["*"]


def test_leeway_is_at_most_30_seconds() -> None:
    assert Settings(jwt_leeway_seconds=30).jwt_leeway_seconds == 30
    with pytest.raises(ValidationError):
        Settings(jwt_leeway_seconds=31)


def test_environment_variables_are_read_with_the_orch_prefix(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("ORCH_HOST", "127.0.0.2")
    monkeypatch.setenv("ORCH_PORT", "8123")
    monkeypatch.setenv("ORCH_DATA_DIR", str(tmp_path / "d"))
    monkeypatch.setenv("ORCH_CORS_ORIGINS", "http://a.example, http://b.example:3000")
    monkeypatch.setenv("ORCH_ADMIN_PASSWORD", "from-the-environment")
    monkeypatch.setenv("ORCH_LOG_LEVEL", "debug")
    settings = Settings()
    assert settings.host == "127.0.0.2"
    assert settings.port == 8123
    assert settings.cors_origins == ["http://a.example", "http://b.example:3000"]
    assert settings.resolved_database_url == f"sqlite:///{tmp_path / 'd' / 'orchestrator.db'}"
    assert settings.admin_password is not None
    assert settings.admin_password.get_secret_value() == "from-the-environment"
    assert "from-the-environment" not in repr(settings)
    assert settings.log_level == "DEBUG"
    monkeypatch.setenv("ORCH_DATABASE_URL", "postgresql://u@127.0.0.1/db")
    assert Settings().resolved_database_url == "postgresql://u@127.0.0.1/db"


def test_development_generates_one_secret_kept_0600(tmp_path: Path) -> None:
    settings = Settings(environment="development", data_dir=tmp_path / "data")
    first = load_secret_key(settings)
    path = tmp_path / "data" / "secret_key"
    assert path.stat().st_mode & 0o777 == 0o600
    assert len(first) >= 32
    assert load_secret_key(settings) == first  # the next start signs with the same key
    configured = Settings(data_dir=tmp_path / "data", secret_key="c" * 40)
    assert load_secret_key(configured) == "c" * 40


def test_only_config_reads_the_environment() -> None:
    offenders = []
    for path in SRC.rglob("*.py"):
        if path.name == "config.py" and path.parent == SRC:
            continue
        if path == SRC / "client" / "http.py":
            continue  # the SDK stands apart from the server: it reads its own ORCH_API_KEY
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            name = None
            if isinstance(node, ast.Attribute) and node.attr in ("environ", "getenv", "environb"):
                name = node.attr
            elif isinstance(node, ast.ImportFrom) and node.module == "os":
                names = {a.name for a in node.names}
                name = next(iter(names & {"environ", "getenv", "environb"}), None)
            if name:
                offenders.append(f"{path.relative_to(SRC)}:{getattr(node, 'lineno', 0)} {name}")
    assert offenders == []


_IMPORT_EVERYTHING = """
import importlib, logging, os, pkgutil, sys
import structlog
import orchestrator
before = sorted(os.listdir("."))
skip = ("orchestrator.__main__", "orchestrator.db.migrations")
for module in pkgutil.walk_packages(orchestrator.__path__, "orchestrator."):
    if not module.name.startswith(skip):
        importlib.import_module(module.name)
import orchestrator.app
assert sorted(os.listdir(".")) == before, os.listdir(".")
assert logging.getLogger().handlers == [], logging.getLogger().handlers
assert not structlog.is_configured()
assert [t for t in __import__("threading").enumerate() if t.name != "MainThread"] == []
print("imported", len(sys.modules))
"""


def test_importing_the_package_does_nothing(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-c", _IMPORT_EVERYTHING],
        check=False,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "PYTHONDONTWRITEBYTECODE": "1"},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("imported")
    assert list(tmp_path.iterdir()) == []
