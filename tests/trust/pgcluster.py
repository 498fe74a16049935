"""A throwaway PostgreSQL cluster a test owns: start it, crash it, hang it, bring it back.

initdb and postgres refuse to run as root, so when we are root they run as the `postgres`
OS user (`runuser`), in a temp directory that user owns.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.servers import free_port

_BIN_DIRS = ("/usr/local/bin", *sorted(map(str, Path("/usr/lib/postgresql").glob("*/bin"))))


def _binary(name: str) -> str:
    for directory in _BIN_DIRS:
        candidate = Path(directory) / name
        if candidate.exists():
            return str(candidate)
    found = shutil.which(name)
    if found is None:
        raise RuntimeError(f"{name} not found")
    return found


def available() -> bool:
    try:
        _binary("initdb")
        _binary("pg_ctl")
    except RuntimeError:
        return False
    return os.geteuid() != 0 or shutil.which("runuser") is not None


@dataclass
class PgCluster:
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="orch-pg-")))
    port: int = field(default_factory=free_port)

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        command = [_binary(args[0]), *args[1:]]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        return subprocess.run(command, capture_output=True, text=True, check=check, timeout=60)

    def init(self) -> PgCluster:
        _OWNED.append(self)
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")
        return self

    def start(self) -> None:
        # fsync off: an immediate stop kills processes, not the OS page cache, so the crash
        # we test (WAL replay after a kill) does not need it, and it keeps CI fast.
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 "
            "-c max_connections=50 -c fsync=off"
        )
        self._run(
            "pg_ctl",
            "-D",
            str(self.data),
            "-o",
            options,
            "-l",
            str(self.root / "log"),
            "-w",
            "start",
        )

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop", check=False)

    def crash(self) -> None:
        """`pg_ctl stop -m immediate`: no checkpoint, recovery replays the WAL on start."""
        self.stop("immediate")

    def _pids(self) -> list[int]:
        """The postmaster and its children; none when the cluster is not running."""
        try:
            postmaster = int((self.data / "postmaster.pid").read_text().split()[0])
            children = Path(f"/proc/{postmaster}/task/{postmaster}/children").read_text().split()
        except (OSError, ValueError, IndexError):
            return []
        return [postmaster, *map(int, children)]

    def hang(self) -> list[int]:
        """SIGSTOP the postmaster and every backend: connections stay open, nothing answers."""
        pids = self._pids()
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
        return pids

    def destroy(self) -> None:
        """Stop the cluster whatever state it is in (a hung one takes no signal until it is
        resumed; a stop that times out leaves it running) and delete its files."""
        if self in _OWNED:
            _OWNED.remove(self)
        pids = self._pids()
        self.resume(pids)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.stop("immediate")
        for pid in self._pids() or pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while any(_running(pid) for pid in pids) and time.monotonic() < deadline:
            time.sleep(0.05)
        shutil.rmtree(self.root, ignore_errors=True)

    def resume(self, pids: list[int]) -> None:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)


def _running(pid: int) -> bool:
    """Whether `pid` is a process that has not ended (a zombie has)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


# Clusters this test process made and has not destroyed: an interrupted run (a fixture's
# teardown that never ran) must not leave one running behind it.
_OWNED: list[PgCluster] = []


@atexit.register
def _destroy_leftovers() -> None:
    for cluster in list(_OWNED):
        cluster.destroy()
