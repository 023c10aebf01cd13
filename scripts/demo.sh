#!/usr/bin/env bash
# Set up (if needed) and upscale the bundled sample photo 2x with the built-in model -> out/sample-2x.png.
# Offline, on the CPU: the built-in model's weights ship inside the package.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
VENV=${UPREZ_VENV:-.venv}
mkdir -p out
time "$VENV/bin/uprez" upscale engine/data/sample.jpg -o out/sample-2x.png --scale 2 --overwrite
