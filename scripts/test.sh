#!/usr/bin/env bash
# Set up (if needed) and run the whole test suite plus the linter.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh dev
VENV=${UPREZ_VENV:-.venv}
"$VENV/bin/ruff" check .
# The slowest tests are listed at the end, so the suite's time can be watched from CI's log.
"$VENV/bin/python" -m pytest -q -p no:cacheprovider --durations=25 "$@"
