"""What every system's producer and handler share: timestamps written to files."""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from pathlib import Path

_done: dict[int, int] = {}  # process id → descriptor of the done file


def done(n: int) -> None:
    """Note that job `n` has run: one line `n time` appended to $BENCH_DONE_FILE."""
    pid = os.getpid()
    fd = _done.get(pid)
    if fd is None:  # each process (a prefork child too) opens its own descriptor
        fd = os.open(os.environ["BENCH_DONE_FILE"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        _done[pid] = fd
    os.write(fd, f"{n} {time.time():.6f}\n".encode())


def produce(
    enqueue: Callable[[int], object], *, first: int, count: int, rate: float, out: Path
) -> None:
    """Enqueue jobs `first`..`first+count-1`, at `rate` per second (0: at once); log their times."""
    lines = []
    start = time.monotonic()
    for i in range(count):
        if rate > 0:
            delay = start + i / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        n = first + i
        enqueued = time.time()
        enqueue(n)
        lines.append(f"{n} {enqueued:.6f}\n")
    with out.open("a") as log:
        log.writelines(lines)


def producer_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--first", type=int, default=0)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--rate", type=float, default=0)
    parser.add_argument("--out", type=Path, required=True)
    return parser.parse_args()
