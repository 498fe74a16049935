"""`orchestrator worker` in child processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


@dataclass
class WorkerProcess:
    name: str
    url: str
    password: str
    log_path: Path
    handler_log: Path
    lease_seconds: float = 1
    queue: str = "default"
    username: str = "admin"
    wait: float = 1
    grace: float = 5
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None
    terminated: bool = False

    def start(self) -> WorkerProcess:
        env = {
            **os.environ,
            "ORCH_PASSWORD": self.password,
            "ORCH_TEST_HANDLER_LOG": str(self.handler_log),
            **self.env,
        }
        command = [
            sys.executable, "-m", "orchestrator", "worker",
            "--queue", self.queue,
            "--handler", "tests.workers.handlers:record",
            "--name", self.name,
            "--lease-seconds", str(self.lease_seconds),
            "--wait", str(self.wait),
            "--grace", str(self.grace),
        ]  # fmt: skip
        if self.url:
            command += ["--url", self.url]
        if self.username:
            command += ["--username", self.username]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                command, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO
            )
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def signal(self, sig: signal.Signals) -> None:
        assert self.process is not None
        self.process.send_signal(sig)

    def terminate(self) -> None:
        """One SIGTERM (a second one, after the worker's shutdown, would kill it)."""
        if self.process is not None and self.process.poll() is None and not self.terminated:
            self.terminated = True
            self.process.send_signal(signal.SIGCONT)
            self.process.terminate()

    def stop(self, timeout: float = 20) -> int | None:
        """SIGTERM, then SIGKILL if it does not end in time; the exit code."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
