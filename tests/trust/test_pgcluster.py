"""The throwaway cluster of the trust tests leaves nothing running, even when it is hung."""

from __future__ import annotations

import pytest

from tests.trust import pgcluster

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.skipif(not pgcluster.available(), reason="initdb/pg_ctl not installed"),
]


def test_a_hung_cluster_is_destroyed_with_every_process() -> None:
    cluster = pgcluster.PgCluster().init()
    cluster.start()
    pids = cluster.hang()  # as a test that fails half-way between hang() and resume() leaves it
    cluster.destroy()
    assert not [pid for pid in pids if pgcluster._running(pid)]
    assert not cluster.root.exists()
