"""A claim reads only the jobs it takes, however many wait: the claim index gives the due jobs
of a queue in the claim's order (priority DESC, run_after, id), so no claim sorts the backlog.

SQLite only: PostgreSQL's planner decides from its statistics (its index was always in order).
A rebuild of the jobs table on SQLite (`batch_alter_table`) drops the DESC of the index; a
migration that rebuilds it must make the index again (see migration 0012), or this fails.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from orchestrator.db.migrate import upgrade
from orchestrator.jobs.leases import _pick


@pytest.fixture(scope="module")
def migrated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("plan") / "orchestrator.db"
    upgrade(f"sqlite:///{path}")
    return path


def _plan(path: Path, rooms: dict[str, int]) -> list[str]:
    sql, params = _pick("sqlite", rooms, 8)
    params["now"] = "2030-01-01T00:00:00.000000+00:00"
    with sqlite3.connect(path) as conn:
        return [row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", params)]


def test_the_claim_index_is_in_claim_order(migrated: Path) -> None:
    with sqlite3.connect(migrated) as conn:
        xinfo = conn.execute("PRAGMA index_xinfo(ix_jobs_pending_due)").fetchall()
    columns = {row[2]: row[3] for row in xinfo}  # column name: 1 when DESC
    assert columns == {"queue": 0, "priority": 1, "run_after": 0, "id": 0, None: 0}


def test_a_claim_of_one_queue_takes_its_jobs_from_the_index_in_order(migrated: Path) -> None:
    plan = _plan(migrated, {"mail": 8})
    assert plan == ["SEARCH jobs USING INDEX ix_jobs_pending_due (queue=?)"]


def test_a_claim_of_several_queues_sorts_only_what_each_queue_gave(migrated: Path) -> None:
    plan = _plan(migrated, {"mail": 8, "video": 3, "sms": 8})
    assert plan.count("SEARCH jobs USING INDEX ix_jobs_pending_due (queue=?)") == 3
    # One sort: of the (at most 8 + 3 + 8) rows the probes returned, never of a queue's backlog.
    assert [step for step in plan if "TEMP B-TREE" in step] == ["USE TEMP B-TREE FOR ORDER BY"]
