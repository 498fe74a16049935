"""Handlers the worker processes under test run (`tests.workers.handlers:record`)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any


def record(job: dict[str, Any]) -> dict[str, Any]:
    """Log the call, wait for `payload.gate` on the first attempt, answer with our pid."""
    payload = job.get("payload") or {}
    gate = payload.get("gate")
    if gate and job["attempts"] == 1:
        deadline = time.monotonic() + 120
        while not Path(gate).exists() and time.monotonic() < deadline:
            time.sleep(0.02)
    with open(os.environ["ORCH_TEST_HANDLER_LOG"], "a") as log:
        log.write(f"{job['id']} {os.getpid()}\n")
    return {"pid": os.getpid(), "n": payload.get("n")}
