"""What a selection costs: the same upscale with masks covering 5 %, 25 % and 100 % of the image.

    python bench/region.py [--side 1024] [--scale 2] [--coverage 5,25,100] [--model FOLDER] [--repeat 2]

The mask is a soft-edged disc in the image centre (a typical selection), plus the run with no mask at
all. Times are the best of --repeat runs after a warm-up, in one process. Without --model, a tiny random
FLUX.1-dev (bench/out/tiny-flux) runs on the CPU with its native 1024 px tiles. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

from bench.scale import tiny_flux  # noqa: E402


def disc_mask(side: int, coverage: float, soft: float = 4.0) -> np.ndarray:
    """A centred disc covering `coverage` of a side x side image (its area at half height), soft edged;
    coverage 1 is the whole image."""
    if coverage >= 1.0:
        return np.ones((side, side), np.float32)
    radius = (coverage * side * side / np.pi) ** 0.5
    y, x = np.mgrid[0:side, 0:side] - (side - 1) / 2
    return np.clip((radius - np.hypot(x, y)) / soft + 0.5, 0.0, 1.0).astype(np.float32)


def main(argv: list[str] | None = None) -> None:
    import torch
    from PIL import Image

    from engine import upscale
    from engine.backends.loader import load_backend

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=1024, help="input side in pixels (square)")
    parser.add_argument("--scale", type=float, default=2.0)
    parser.add_argument("--coverage", default="5,25,100", help="mask coverage in percent, comma-separated")
    parser.add_argument("--model", help="a model folder (default: the tiny random FLUX fixture)")
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    model = args.model or tiny_flux()
    backend = load_backend(model, device="cpu")
    with Image.open(ROOT / "engine" / "data" / "sample.jpg") as image:
        rgb = np.asarray(image.convert("RGB").resize((args.side, args.side), Image.Resampling.LANCZOS))

    def best_time(mask: np.ndarray | None) -> float:
        times = []
        for _ in range(args.repeat):
            start = time.perf_counter()
            upscale(rgb, scale=args.scale, backend=backend, mask=mask)
            times.append(time.perf_counter() - start)
        return min(times)

    upscale(rgb[:64, :64], scale=2, backend=backend)  # warm-up: first calls pay for lazy initialisation
    full = best_time(None)
    rows = ["| mask | covered | seconds | share of the full image's time |", "|---|---:|---:|---:|",
            f"| none (whole image) | 100 % | {full:.2f} | 1.00 |"]
    for percent in (float(p) for p in args.coverage.split(",")):
        mask = disc_mask(args.side, percent / 100)
        seconds = best_time(mask)
        covered = float((mask > 0).mean()) * 100
        rows.append(f"| disc {percent:g} % | {covered:.1f} % | {seconds:.2f} | {seconds / full:.2f} |")
        print(rows[-1], file=sys.stderr)
    print(f"Model: {model}; input {args.side}² px, {args.scale:g}x; CPU, 2 threads; best of {args.repeat}.\n")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
