"""Real nginx and HAProxy processes running the configurations of `deploy/`, on loopback ports.

Each runs in the foreground from a temporary directory, as a child of the test (its own pid,
stopped by that pid), with only the listening port and the upstream addresses rewritten.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
from pathlib import Path

import pytest
from bench.servers import Server, free_port

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


class ProxyProcess(Server):
    """A proxy in the foreground, listening on `port` (its configuration says so); ready when
    the port takes a connection."""

    def __init__(self, name: str, workdir: Path, port: int, command: list[str]) -> None:
        super().__init__(name, command, {}, workdir / "proxy.out", workdir, port=port)
        self.workdir = workdir

    def arguments(self) -> list[str]:
        return self.command

    def ready(self) -> bool:
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
        except OSError:
            return False
        return True

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
