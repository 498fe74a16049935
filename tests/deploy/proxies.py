"""Real nginx and HAProxy processes running the configurations of `deploy/`, on loopback ports.

Each runs in the foreground from a temporary directory, as a child of the test (its own pid,
stopped by that pid), with only the listening port and the upstream addresses rewritten.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.server import free_port

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def require(binary: str) -> str:
    """The proxy's executable; CI installs it, elsewhere a missing one skips the test."""
    path = shutil.which(binary) or shutil.which(binary, path="/usr/sbin:/usr/local/sbin")
    if path is None:
        if os.environ.get("ORCH_TEST_REQUIRE_SERVICES") == "1":
            pytest.fail(f"{binary} is required (apt-get install -y {binary})")
        pytest.skip(f"{binary} is not installed")
    return path


def _substitute(text: str, pattern: str, replacements: list[str]) -> str:
    """Replace each match of `pattern` in turn; the file must have exactly that many."""
    matches = list(re.finditer(pattern, text, flags=re.MULTILINE))
    assert len(matches) == len(replacements), f"{pattern!r} in the deploy file changed"
    for match, replacement in zip(reversed(matches), reversed(replacements), strict=True):
        text = text[: match.start()] + replacement + text[match.end() :]
    return text


@dataclass
class ProxyProcess:
    name: str
    workdir: Path
    port: int
    command: list[str]
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def start(self, timeout: float = 15.0) -> ProxyProcess:
        with (self.workdir / "proxy.out").open("ab") as out:
            self.process = subprocess.Popen(
                self.command, cwd=self.workdir, stdout=out, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited:\n{self.logs()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"{self.name} did not listen:\n{self.logs()}")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def logs(self) -> str:
        return "\n".join(
            path.read_text(errors="replace") for path in sorted(self.workdir.glob("*.out"))
        )


def nginx(workdir: Path, upstreams: list[int]) -> ProxyProcess:
    binary = require("nginx")
    port = free_port()
    site = (DEPLOY / "nginx.conf").read_text()
    site = _substitute(site, r"^    listen 80;$", [f"    listen 127.0.0.1:{port};"])
    site = _substitute(
        site,
        r"^    server 127\.0\.0\.1:800[12] ",
        [f"    server 127.0.0.1:{p} " for p in upstreams],
    )
    site = _substitute(
        site, r"/var/log/nginx/orchestrator\.access\.log", [str(workdir / "access.out")]
    )
    (workdir / "orchestrator.conf").write_text(site)
    temp = "\n".join(
        f"    {kind}_temp_path {workdir / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    # As root, workers would otherwise switch to `nobody`, who cannot use the temp directory.
    user = "user root root;\n" if os.geteuid() == 0 else ""
    (workdir / "nginx.conf").write_text(
        f"{user}worker_processes 1;\n"
        f"error_log {workdir / 'error.out'} warn;\n"
        f"pid {workdir / 'nginx.pid'};\n"
        "daemon off;\n"
        "events { worker_connections 1024; }\n"
        f"http {{\n{temp}\n    include {workdir / 'orchestrator.conf'};\n}}\n"
    )
    command = [binary, "-p", str(workdir), "-e", str(workdir / "error.out")]
    command += ["-c", str(workdir / "nginx.conf")]
    return ProxyProcess("nginx", workdir, port, command)


def haproxy(workdir: Path, upstreams: list[int]) -> ProxyProcess:
    binary = require("haproxy")
    port = free_port()
    config = (DEPLOY / "haproxy.cfg").read_text()
    config = _substitute(config, r"^    bind :80$", [f"    bind 127.0.0.1:{port}"])
    config = _substitute(
        config,
        r"^    server (p[12]) 127\.0\.0\.1:800[12]$",
        [f"    server p{n} 127.0.0.1:{p}" for n, p in enumerate(upstreams, 1)],
    )
    (workdir / "haproxy.cfg").write_text(config)
    command = [binary, "-db", "-f", str(workdir / "haproxy.cfg")]
    return ProxyProcess("haproxy", workdir, port, command)
