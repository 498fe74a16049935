"""The long schemathesis run: 1,000 examples per operation x 3 seeds, on a live server.

    .venv/bin/python scripts/fuzz_long.py [--examples 1000] [--seeds 1 2 3] [--database-url …]

Prints each seed's summary; exits 1 on any failure (the JUnit reports stay in --report-dir).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.trust.fuzz import ALL_PHASES, run_schemathesis
from tests.trust.live import start_server


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=1000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--database-url", default=None, help="PostgreSQL URL; SQLite if unset")
    parser.add_argument("--report-dir", type=Path, default=Path("schemathesis-report"))
    args = parser.parse_args(argv)
    failed = False
    for seed in args.seeds:
        with tempfile.TemporaryDirectory(prefix="orch-fuzz-") as tmp:
            server = start_server(Path(tmp), args.database_url)
            started = time.monotonic()
            try:
                result = run_schemathesis(
                    server.url,
                    examples=args.examples,
                    seed=seed,
                    phases=ALL_PHASES,
                    report_dir=args.report_dir / f"seed-{seed}",
                    timeout=6 * 3600,
                )
            finally:
                server.stop()
        summary = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""
        print(
            f"seed {seed}: exit {result.returncode} in {time.monotonic() - started:.0f}s {summary}"
        )
        if result.returncode != 0:
            failed = True
            print(result.stdout[-20000:])
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
