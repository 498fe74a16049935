"""Handlers the worker processes under test run (`tests.workers.handlers:record`)."""

from __future__ import annotations

import asyncio
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


async def staggered(job: dict[str, Any]) -> dict[str, Any]:
    """Log the call after `payload.ms` milliseconds (jobs of one batch finish apart)."""
    await asyncio.sleep((job.get("payload") or {}).get("ms", 0) / 1000)
    line = f"{job['id']} {os.getpid()}\n".encode()
    fd = os.open(os.environ["ORCH_TEST_HANDLER_LOG"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, line)  # one short append: no thread hop needed
    finally:
        os.close(fd)
    return {"pid": os.getpid()}


def chatty(job: dict[str, Any], context: Any) -> dict[str, Any]:
    """Log `payload.lines` lines through the context, then records through `logging` (the
    worker routes those of its `--job-log-level` or above to the job's log)."""
    import logging

    lines = (job.get("payload") or {}).get("lines", 0)
    for k in range(lines):
        context.log(f"line {k}")
    logger = logging.getLogger("tests.chatty")
    logger.info("through logging: %s", job["name"])
    logger.debug("below the level")
    try:
        raise ValueError("boom")
    except ValueError:
        logger.exception("caught")
    return {"logged": lines}
