"""Child processes of the benchmarks and the tests, and the ones under load: the raw-ASGI
reference and `orchestrator serve`, on loopback."""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

import httpx

REPO = Path(__file__).resolve().parent.parent
ADMIN_PASSWORD = "bench-admin-" + secrets.token_urlsafe(12)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def descendants(pid: int) -> list[int]:
    """`pid` and every live process below it, parents first."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rpartition(")")[2].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, []))
    return found


def listening_sockets(port: int) -> set[str]:
    """The `socket:[inode]` names of the IPv4 sockets listening on `port` (from /proc)."""
    found = set()
    with contextlib.suppress(OSError):
        for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and int(fields[1].rpartition(":")[2], 16) == port:
                found.add(f"socket:[{fields[9]}]")
    return found


def owns_socket(pids: list[int], names: set[str]) -> bool:
    """Whether one of `pids` holds one of the sockets `names`."""
    for pid in pids:
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    if os.readlink(f"/proc/{pid}/fd/{fd}") in names:
                        return True
    return False


@dataclass
class Child:
    """A process we started, logging to `log_path`; stopped by its own pid, never by name."""

    name: str
    command: list[str]
    env: dict[str, str]
    log_path: Path
    cwd: Path = REPO
    process: subprocess.Popen[bytes] | None = None
    terminated: bool = False

    def arguments(self) -> list[str]:
        """The command line it is started with."""
        return self.command

    def environment(self) -> dict[str, str]:
        """Its environment: ours, with `env` on top."""
        return {**os.environ, **self.env}

    def launch(self) -> None:
        self.terminated = False
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.arguments(),
                env=self.environment(),
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=str(self.cwd),
            )

    def start(self) -> Self:
        self.launch()
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def signal(self, sig: signal.Signals) -> None:
        assert self.process is not None
        self.process.send_signal(sig)

    def check_alive(self) -> None:
        if self.process is not None and self.process.poll() is not None:
            raise RuntimeError(f"{self.name} exited ({self.process.returncode}):\n{self.tail()}")

    def terminate(self) -> None:
        """One SIGTERM (a second one, during a graceful shutdown, may cut it short), after a
        SIGCONT in case the process was stopped."""
        if self.process is not None and self.process.poll() is None and not self.terminated:
            self.terminated = True
            self.process.send_signal(signal.SIGCONT)
            self.process.terminate()

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM, then SIGKILL (to it and to what it started) if it does not end in time;
        the exit code."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.process.returncode

    def kill(self) -> None:
        """SIGKILL to the process and every process below it."""
        if self.process is None or self.process.poll() is not None:
            return
        for pid in reversed(descendants(self.process.pid)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.process.wait()

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def tail(self) -> str:
        return self.logs()[-3000:]

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


@dataclass
class Server(Child):
    """A child serving HTTP on a loopback port, given to it as `--port`."""

    port: int = field(default_factory=free_port)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def arguments(self) -> list[str]:
        return [*self.command, "--port", str(self.port)]

    def ready(self) -> bool:
        """Whether it serves: its health check answers 200, on a socket of its own (another
        process may have taken the port between `free_port` and this one's bind)."""
        try:
            answered = httpx.get(self.url + "/health", timeout=0.5).status_code == 200
        except httpx.HTTPError:
            return False
        return answered and owns_socket(descendants(self.pid), listening_sockets(self.port))

    def wait_ready(self, timeout: float = 60.0) -> None:
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited early:\n{self.tail()}")
            if self.ready():
                return
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"{self.name} did not start:\n{self.tail()}")

    def start(self, timeout: float = 60.0) -> Self:
        """Launch it and wait until its health check answers."""
        self.launch()
        self.wait_ready(timeout=timeout)
        return self


SERVE = [sys.executable, "-m", "orchestrator", "serve", "--host", "127.0.0.1"]


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
        command=SERVE,
        env=env,
        log_path=workdir / f"{name}.log",
        cwd=data_dir,
    )
