"""The processes under load: the raw-ASGI reference and `orchestrator serve`, on loopback."""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
ADMIN_PASSWORD = "bench-admin-" + secrets.token_urlsafe(12)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Server:
    """One child process serving HTTP on a loopback port."""

    name: str
    command: list[str]
    env: dict[str, str]
    log_path: Path
    cwd: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def launch(self) -> None:
        env = {**os.environ, **self.env}
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [*self.command, "--port", str(self.port)],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=str(self.cwd),
            )

    def wait_ready(self, health_path: str = "/health", timeout: float = 60.0) -> None:
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited early:\n{self.tail()}")
            try:
                if httpx.get(self.url + health_path, timeout=0.5).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"{self.name} did not start:\n{self.tail()}")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:]

    def memory_kib(self) -> tuple[int, int]:
        """(current RSS, peak RSS) in KiB, from /proc."""
        figures = {}
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                figures[key] = int(value.split()[0])
        return figures["VmRSS"], figures["VmHWM"]

    def cpu_seconds(self) -> float:
        """CPU time (user + system, all threads) the process has used so far."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def loaded(self, *needles: str) -> dict[str, bool]:
        """Whether each of `needles` names a shared object mapped into the process."""
        maps = Path(f"/proc/{self.pid}/maps").read_text()
        return {needle: needle in maps for needle in needles}


def reference(workdir: Path) -> Server:
    return Server(
        name="reference",
        command=[sys.executable, "-m", "bench.reference"],
        env={"PYTHONPATH": str(REPO)},
        log_path=workdir / "reference.log",
        cwd=REPO,
    )


def service(
    workdir: Path, name: str, *, database_url: str | None, extra_env: dict[str, str] | None = None
) -> Server:
    """The service as deployed: production mode, every middleware on, rate limits off."""
    data_dir = workdir / name
    data_dir.mkdir(parents=True, exist_ok=True)
    env = {
        "ORCH_ENVIRONMENT": "production",
        "ORCH_SECRET_KEY": secrets.token_urlsafe(48),
        "ORCH_ADMIN_PASSWORD": ADMIN_PASSWORD,
        "ORCH_DATA_DIR": str(data_dir),
        "ORCH_RATE_LIMIT_ENABLED": "false",
        "ORCH_LOG_LEVEL": "INFO",
    }
    if database_url:
        env["ORCH_DATABASE_URL"] = database_url
    env.update(extra_env or {})
    return Server(
        name=name,
        command=[sys.executable, "-m", "orchestrator", "serve", "--host", "127.0.0.1"],
        env=env,
        log_path=workdir / f"{name}.log",
        cwd=data_dir,
    )
