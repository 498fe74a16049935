"""Run the schemathesis CLI against a live server: every check, positive and negative data,
and the stateful phase. Shared by the CI test and `scripts/fuzz_long.sh`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.support.users import ADMIN_PASSWORD

# The change stream never ends by design (the real-time tests cover it); the login alias is
# the same handler as /auth/login, and each login costs an argon2 hash.
EXCLUDED_PATHS = r".*/changes$|.*/ws$|^/api/v1/auth/login$"


CI_PHASES = "examples,fuzzing,stateful"
ALL_PHASES = "examples,coverage,fuzzing,stateful"


def run_schemathesis(
    base_url: str,
    *,
    examples: int,
    seed: int,
    report_dir: Path,
    phases: str = CI_PHASES,
    timeout: float = 1500,
) -> subprocess.CompletedProcess[str]:
    """`st run` with a login-driven token; returns the finished process (0 = no failures)."""
    st = Path(sys.executable).with_name("st")
    root = Path(__file__).resolve().parents[2]
    env = {
        **os.environ,
        "SCHEMATHESIS_HOOKS": "tests.trust.schemathesis_hooks",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")])),
        "ORCH_FUZZ_BASE_URL": base_url,
        "ORCH_FUZZ_USERNAME": "admin",
        "ORCH_FUZZ_PASSWORD": ADMIN_PASSWORD,
        "NO_COLOR": "1",
    }
    command = [
        str(st),
        f"--config-file={Path(__file__).with_name('schemathesis.toml')}",
        "run",
        f"{base_url}/openapi.json",
        "--checks=all",
        "--mode=all",
        f"--phases={phases}",
        f"--max-examples={examples}",
        f"--seed={seed}",
        "--workers=2",
        "--request-timeout=10",
        "--suppress-health-check=all",
        f"--exclude-path-regex={EXCLUDED_PATHS}",
        "--report=junit",
        f"--report-dir={report_dir}",
        "--warnings=off",
        # NUL is refused on purpose (no backend stores it faithfully): see test_hostile_input.
        "--generation-allow-x00=false",
    ]
    return subprocess.run(
        command, env=env, cwd=root, capture_output=True, text=True, timeout=timeout, check=False
    )
