#!/usr/bin/env bash
# Set up (if needed) and upscale the bundled sample photo 2x into out/sample-2x.png.
# Until the built-in model lands, the model is a tiny random FLUX built here: the output shows the
# pipeline working end to end, not the quality of a trained model.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
VENV=${UPREZ_VENV:-.venv}
mkdir -p out
[ -f out/tiny-flux/model_index.json ] || "$VENV/bin/python" -m engine.testing.tiny_models out/tiny-flux --family flux-dev
"$VENV/bin/uprez" upscale engine/data/sample.jpg -o out/sample-2x.png --scale 2 --model out/tiny-flux --overwrite
