"""The soak script, shortened for CI: no errors, nothing missed or duplicated, bounded RSS."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(
    importlib.util.find_spec("orchestrator.changes.ws") is None,
    reason="/ws is not merged yet (issue 4)",
)
def test_short_soak_loses_nothing() -> None:
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "soak.py"),
            "--subscribers",
            "200",
            "--duration",
            "8",
        ],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout + result.stderr[-5000:]
    assert "errors 0, missed 0, duplicated 0" in result.stdout
