"""Drive one URL with wrk and read its figures (a Lua `done` hook prints them as JSON)."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

_MARK = "BENCH_RESULT "

# wrk calls `done` once at the end; latencies are in microseconds. Status >= 400 counts as an
# error (`errors.status`), so a scenario that silently answers 401 or 500 is caught.
_DONE = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '%s{"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, '
    .. '"errors": %d, "status_errors": %d}\\n',
    "MARK", summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(99),
    e.connect + e.read + e.write + e.timeout, e.status))
end
"""


@dataclass(frozen=True)
class Request:
    """What every request of a scenario sends."""

    method: str = "GET"
    path: str = "/"
    headers: Mapping[str, str] | None = None
    body: bytes | None = None


@dataclass(frozen=True)
class Result:
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int


def ensure_wrk() -> str:
    """The wrk binary; installs Debian's package when it is missing."""
    found = shutil.which("wrk")
    if found:
        return found
    print("wrk is missing; installing it with apt-get", flush=True)
    subprocess.run(["apt-get", "update", "-qq"], check=True, stdout=subprocess.DEVNULL)
    subprocess.run(
        ["apt-get", "install", "-y", "-qq", "wrk"],
        check=True,
        stdout=subprocess.DEVNULL,
        env={"DEBIAN_FRONTEND": "noninteractive", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
    )
    found = shutil.which("wrk")
    if not found:
        raise RuntimeError("wrk could not be installed")
    return found


def _lua_string(value: str | bytes) -> str:
    text = value.decode() if isinstance(value, bytes) else value
    return json.dumps(text)  # a JSON string literal is a valid Lua string literal for ASCII


def write_script(directory: Path, name: str, request: Request) -> Path:
    lines = [f"wrk.method = {_lua_string(request.method)}"]
    if request.body is not None:
        lines.append(f"wrk.body = {_lua_string(request.body)}")
    for key, value in (request.headers or {}).items():
        lines.append(f"wrk.headers[{_lua_string(key)}] = {_lua_string(value)}")
    path = directory / f"{name}.lua"
    path.write_text("\n".join(lines) + "\n" + _DONE.replace("MARK", _MARK))
    return path


def run(
    wrk: str,
    *,
    base_url: str,
    request: Request,
    script: Path,
    seconds: float,
    connections: int,
    threads: int = 1,
) -> Result:
    command = [
        wrk,
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "5s",
        "-s",
        str(script),
        base_url + request.path,
    ]
    done = subprocess.run(
        command, check=False, capture_output=True, text=True, timeout=seconds + 30
    )
    for line in done.stdout.splitlines():
        if line.startswith(_MARK):
            figures = json.loads(line[len(_MARK) :])
            break
    else:
        raise RuntimeError(f"wrk printed no result:\n{done.stdout}\n{done.stderr}")
    seconds_run = figures["duration_us"] / 1e6
    return Result(
        requests_per_second=figures["requests"] / seconds_run if seconds_run else 0.0,
        p50_ms=figures["p50_us"] / 1000,
        p99_ms=figures["p99_us"] / 1000,
        requests=figures["requests"],
        errors=figures["errors"] + figures["status_errors"],
    )
