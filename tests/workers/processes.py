"""`orchestrator worker` in child processes, handled as every child of the tests is."""

from __future__ import annotations

import sys
from pathlib import Path

from bench.servers import Child

REPO = Path(__file__).resolve().parents[2]


class WorkerProcess(Child):
    """A worker running `tests.workers.handlers:record`; `env` (settable before `start`) goes
    on top of its own."""

    def __init__(
        self,
        name: str,
        url: str,
        password: str,
        log_path: Path,
        handler_log: Path,
        *,
        lease_seconds: float = 1,
        queue: str = "default",
        username: str = "admin",
        wait: float = 1,
        grace: float = 5,
        concurrency: int = 1,
        handler: str = "tests.workers.handlers:record",
        options: tuple[str, ...] = (),
    ) -> None:
        super().__init__(name=name, command=[], env={}, log_path=log_path, cwd=REPO)
        self.url = url
        self.password = password
        self.handler_log = handler_log
        self.lease_seconds = lease_seconds
        self.queue = queue
        self.username = username
        self.wait = wait
        self.grace = grace
        self.concurrency = concurrency
        self.handler = handler
        self.options = options

    def arguments(self) -> list[str]:
        command = [
            sys.executable, "-m", "orchestrator", "worker",
            "--queue", self.queue,
            "--handler", self.handler,
            "--concurrency", str(self.concurrency),
            "--name", self.name,
            "--lease-seconds", str(self.lease_seconds),
            "--wait", str(self.wait),
            "--grace", str(self.grace),
        ]  # fmt: skip
        command += self.options
        if self.url:
            command += ["--url", self.url]
        if self.username:
            command += ["--username", self.username]
        return command

    def environment(self) -> dict[str, str]:
        return {
            **super().environment(),
            "ORCH_PASSWORD": self.password,
            "ORCH_TEST_HANDLER_LOG": str(self.handler_log),
            **self.env,
        }

    def stop(self, timeout: float = 20) -> int | None:
        return super().stop(timeout)
