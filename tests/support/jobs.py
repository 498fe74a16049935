"""Jobs made through the create path the route uses (`create_job`), so they are stored,
logged and represented exactly as a client's would be."""

from __future__ import annotations

from typing import Any

from orchestrator.db import Database
from orchestrator.jobs.queries import JobSpec, create_job


async def make_jobs(
    db: Database,
    count: int = 1,
    *,
    queue: str = "default",
    payload: dict[str, Any] | None = None,
    priority: int = 0,
    max_attempts: int = 3,
    created_by: str = "admin",
    due_in: float = 0,
) -> list[str]:
    """`count` pending jobs, created one after the other (claim order), due in `due_in`
    seconds; returns their ids."""
    ids: list[str] = []
    for n in range(count):
        job = await create_job(
            db,
            spec=JobSpec(
                title=f"job {n}",
                queue=queue,
                payload=payload,
                priority=priority,
                max_attempts=max_attempts,
            ),
            created_by=created_by,
            delay_seconds=due_in or None,
        )
        ids.append(job.id)
    return ids
