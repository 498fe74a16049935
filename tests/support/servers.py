"""`orchestrator serve` in a child process on a free loopback port, for end-to-end tests.

The process handling is the benchmarks' (`bench.servers`): one way to start, wait for and stop
a server, by its own pid.
"""

from __future__ import annotations

from pathlib import Path

from bench.servers import SERVE, Server, free_port

from tests.support.settings import SUITE_DB_TIMEOUT_SECONDS

__all__ = ["ServerProcess", "free_port"]


class ServerProcess(Server):
    """A test-mode server: `env` on top of ours (rate limits off unless `env` turns them on,
    the suite's database timeout unless `env` sets one), run from the directory of its log."""

    def __init__(self, env: dict[str, str], log_path: Path, port: int | None = None) -> None:
        super().__init__(
            name="orchestrator serve",
            command=SERVE,
            # Suites log in and fuzz freely; rate-limit tests opt back in through `env`.
            env={
                "ORCH_RATE_LIMIT_ENABLED": "false",
                "ORCH_DB_TIMEOUT_SECONDS": str(SUITE_DB_TIMEOUT_SECONDS),
                **env,
            },
            log_path=log_path,
            cwd=log_path.parent,
            port=free_port() if port is None else port,
        )
