"""The one SR model with real weights here (bench/sr_train.py's Compact x2, trained on the built-in model's train
photos) through the user's command line: it must do better than the Lanczos upscale it replaces."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from engine.builtin import data
from engine.cli import main
from engine.imagefile import read_image
from engine.pixels import conventional_resize

ROOT = Path(__file__).resolve().parents[2]
TRAINED = ROOT / "bench" / "artefacts" / "compact-x2-uprez.safetensors"
SAMPLE = ROOT / "engine" / "data" / "sample.jpg"  # never trained on (not among the built-in model's photos)


def test_the_trained_compact_model_beats_lanczos_on_an_unseen_photo(tmp_path, capsys):
    photo = np.asarray(Image.open(SAMPLE).convert("RGB"), dtype=np.float32) / 255.0
    hr, lr = data.eval_pair(photo, 2)
    source = tmp_path / "lr.png"
    Image.fromarray(np.round(lr * 255).astype(np.uint8)).save(source)
    out = tmp_path / "sr.png"
    assert main(["upscale", str(source), "-o", str(out), "-s", "2", "--model", str(TRAINED), "-q"]) == 0, \
        capsys.readouterr().err
    sr = read_image(out).astype(np.float32) / 255.0
    lanczos = conventional_resize(lr, (hr.shape[1], hr.shape[0]))
    # Measured 31.28 dB / 0.894 against Lanczos's 29.66 dB / 0.875: a random or untrained model fails this.
    assert data.psnr(sr, hr) > data.psnr(lanczos, hr) + 1.0
    assert data.ssim(sr, hr) > data.ssim(lanczos, hr) + 0.01
