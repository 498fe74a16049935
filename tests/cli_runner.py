"""Run the real command line (`python -m orchestrator …`) in a child process."""

from __future__ import annotations

import os
import subprocess
import sys


def run_cli(
    *args: str, env: dict[str, str], password: str | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """`orchestrator ARGS`, with `password` (if any) as the first line of standard input."""
    return subprocess.run(
        [sys.executable, "-m", "orchestrator", *args],
        input=None if password is None else password + "\n",
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
