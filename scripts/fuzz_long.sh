#!/bin/sh
# The long fuzzing run (1,000 examples per operation x 3 seeds); see scripts/fuzz_long.py.
set -eu
cd "$(dirname "$0")/.."
exec .venv/bin/python scripts/fuzz_long.py "$@"
