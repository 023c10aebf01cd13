#!/usr/bin/env bash
# Set up a virtual environment with Uprez in it. Usage: scripts/setup.sh [extras], e.g. "test".
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=${UPREZ_VENV:-.venv}
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
# Install the CPU build of torch first, by exact version: a bare "torch" would pull a multi-GB CUDA
# build. On a GPU machine, install the CUDA build of torch into the venv before running this script.
if ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
    "$VENV/bin/python" -m pip install --quiet "torch==${UPREZ_TORCH_VERSION:-2.13.0}"
fi
"$VENV/bin/python" -m pip install --quiet -e ".${1:+[$1]}"
# spandrel (upscale models) without its torchvision dependency: PyPI's torchvision breaks beside the CPU torch
# wheel, and the SR path does not need it (engine/sr/spandrel_import.py). Keep in step with installers/engine_env.py.
"$VENV/bin/python" -m pip install --quiet --no-deps "spandrel>=0.4.1,<0.5"
