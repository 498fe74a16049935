"""`orchestrator serve` in a child process on a free loopback port, for end-to-end tests.

The process handling is the benchmarks' (`bench.servers`): one way to start, wait for and stop
a server, by its own pid.
"""

from __future__ import annotations

from pathlib import Path
from typing import Self

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
        self.port_chosen = port is None

    def start(self, timeout: float = 60.0) -> Self:
        """Launch it and wait until it serves; on a port of its own choosing, again on another
        port when the first was taken meanwhile (by another test's server)."""
        for _ in range(2):
            try:
                return super().start(timeout=timeout)
            except RuntimeError:
                if not self.port_chosen or PORT_TAKEN not in self.tail():
                    raise
                self.port = free_port()
        return super().start(timeout=timeout)


PORT_TAKEN = "address already in use"
