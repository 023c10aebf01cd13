"""Upscale quality on the built-in model's eval photos: PSNR/SSIM per method at x2 and x4, and crops to look at.

    python bench/quality.py [--methods bicubic,lanczos,builtin@1,builtin@2,builtin@4] [--limit N]
                            [--max-side 1600] [--crop 512] [--factors 2,4] [--model builtin|FOLDER]
                            [--crops bench/out/quality]

Each eval photo (engine.builtin.data) is loaded at --max-side, centre-cropped to at most --crop square,
and turned into (HR, LR) by `data.eval_pair`; every method upscales LR back and is scored against HR with
`data.psnr` (RGB, 8-bit, whole image) and `data.ssim` (BT.601 luma, Gaussian 11x11, sigma 1.5). Methods:
`bicubic` (PIL), `lanczos` (the engine's conventional upscale), `builtin` (the built-in model at its
default steps) and `builtin@N` (N steps), the model through `engine.upscale(..., model="builtin", seed=0)`.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

from engine.builtin import data  # noqa: E402
from engine.pixels import conventional_resize  # noqa: E402

DEFAULT_METHODS = "bicubic,lanczos,builtin@1,builtin@2,builtin@4"
CROP_PHOTOS = 3  # the most detailed eval photos get side-by-side crops
CROP_SIDE = 128  # HR pixels per crop, shown enlarged 2x


def _bicubic(lr: np.ndarray, factor: int) -> np.ndarray:
    size = (lr.shape[1] * factor, lr.shape[0] * factor)
    planes = [Image.fromarray(np.ascontiguousarray(lr[:, :, c]), mode="F").resize(size, Image.Resampling.BICUBIC)
              for c in range(3)]
    return np.stack([np.asarray(plane) for plane in planes], axis=2).clip(0.0, 1.0)


def _lanczos(lr: np.ndarray, factor: int) -> np.ndarray:
    return conventional_resize(lr, (lr.shape[1] * factor, lr.shape[0] * factor))


def _builtin(steps: int | None, model: str = "builtin") -> Callable[[np.ndarray, int], np.ndarray]:
    def run(lr: np.ndarray, factor: int) -> np.ndarray:
        import engine

        pixels = np.round(lr * 255.0).astype(np.uint8)  # what a user's 8-bit file gives the engine
        try:
            out = engine.upscale(pixels, scale=factor, steps=steps, seed=0, model=model)
        except Exception as exc:
            raise SystemExit(f"the built-in model {model!r} failed ({type(exc).__name__}: {exc}); "
                             "without it, run with --methods bicubic,lanczos") from exc
        return np.asarray(out, dtype=np.float32) / 255.0

    return run


def upscaler(method: str, model: str = "builtin") -> Callable[[np.ndarray, int], np.ndarray]:
    """`(lr, factor) -> sr` for a method name: bicubic, lanczos, builtin or builtin@N (`model` picks its weights)."""
    if method == "bicubic":
        return _bicubic
    if method == "lanczos":
        return _lanczos
    if method == "builtin":
        return _builtin(None, model)
    if method.startswith("builtin@") and method[8:].isdigit() and int(method[8:]) >= 1:
        return _builtin(int(method[8:]), model)
    raise SystemExit(f"unknown method {method!r}; use bicubic, lanczos, builtin or builtin@N (N steps)")


def centre_crop(image: np.ndarray, side: int) -> np.ndarray:
    height, width = image.shape[:2]
    h, w = min(side, height), min(side, width)
    y, x = (height - h) // 2, (width - w) // 2
    return image[y : y + h, x : x + w]


def detail(hr: np.ndarray) -> np.ndarray:
    """Per-pixel gradient magnitude of the luma (|dx| + |dy|): where upscalers differ most."""
    luma = hr @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    energy = np.zeros_like(luma)
    energy[:, 1:] += np.abs(np.diff(luma, axis=1))
    energy[1:, :] += np.abs(np.diff(luma, axis=0))
    return energy


def busiest_window(hr: np.ndarray, side: int, stride: int = 32) -> tuple[int, int]:
    """Top-left (y, x) of the side x side window with the most detail."""
    energy = detail(hr)
    spots = [(y, x) for y in range(0, max(1, hr.shape[0] - side + 1), stride)
             for x in range(0, max(1, hr.shape[1] - side + 1), stride)]
    return max(spots, key=lambda s: (energy[s[0] : s[0] + side, s[1] : s[1] + side].sum(), -s[0], -s[1]))


def side_by_side(panels: dict[str, np.ndarray], y: int, x: int, side: int = CROP_SIDE) -> Image.Image:
    """The same HR region of every panel, each enlarged 2x with nearest neighbour, labelled on top."""
    tiles = [Image.fromarray(np.round(p[y : y + side, x : x + side] * 255.0).astype(np.uint8)) for p in panels.values()]
    tiles = [tile.resize((tile.width * 2, tile.height * 2), Image.Resampling.NEAREST) for tile in tiles]
    gap, label = 4, 14
    sheet = Image.new("RGB", (sum(t.width for t in tiles) + gap * (len(tiles) - 1), tiles[0].height + label), "white")
    draw = ImageDraw.Draw(sheet)
    left = 0
    for name, tile in zip(panels, tiles, strict=True):
        sheet.paste(tile, (left, label))
        draw.text((left + 2, 1), name, fill="black")
        left += tile.width + gap
    return sheet


def table(means: dict[tuple[str, int], tuple[float, float]], methods: list[str], factors: list[int],
          delta: bool) -> str:
    head = "| method | " + " | ".join(f"×{f} {'Δ' if delta else ''}PSNR | ×{f} {'Δ' if delta else ''}SSIM"
                                     for f in factors) + " |"
    rows = [head, "|---|" + "---:|" * (2 * len(factors))]
    for method in methods:
        cells = []
        for f in factors:
            p, s = means[method, f]
            if delta:
                p0, s0 = means["bicubic", f]
                cells += [f"{p - p0:+.2f}", f"{s - s0:+.4f}"]
            else:
                cells += [f"{p:.2f}", f"{s:.4f}"]
        rows.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default=DEFAULT_METHODS, help=f"comma-separated (default {DEFAULT_METHODS})")
    parser.add_argument("--factors", default="2,4", help="comma-separated whole factors (default 2,4)")
    parser.add_argument("--limit", type=int, default=None, help="only the first N eval photos")
    parser.add_argument("--max-side", type=int, default=1600, help="photos are area-downscaled to this first")
    parser.add_argument("--crop", type=int, default=512, help="centre crop of each photo, HR pixels (default 512)")
    parser.add_argument("--model", default="builtin",
                        help="weights for the builtin methods: 'builtin' or a training run's export folder")
    parser.add_argument("--crops", type=Path, default=ROOT / "bench" / "out" / "quality",
                        help="folder for the side-by-side PNGs (default bench/out/quality)")
    args = parser.parse_args(argv)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    factors = [int(f) for f in args.factors.split(",")]
    if "bicubic" not in methods:
        methods.insert(0, "bicubic")  # the reference every delta is taken against
    runs = {method: upscaler(method, args.model) for method in methods}
    columns = {"bicubic": "bicubic", "Lanczos": "lanczos"}  # crop label -> method
    if any(m.startswith("builtin") for m in methods):
        columns["built-in"] = "builtin"  # at the model's default steps

    photos = data.eval_photos()[: args.limit]
    images = {photo.name: centre_crop(data.load(photo, args.max_side), args.crop) for photo in photos}
    # Crops of the most detailed photos: on flat sky every upscaler looks the same.
    crop_names = sorted(images, key=lambda name: -float(detail(images[name]).mean()))[:CROP_PHOTOS]
    scores: dict[tuple[str, int], list[tuple[float, float]]] = defaultdict(list)
    seconds: dict[str, float] = defaultdict(float)
    args.crops.mkdir(parents=True, exist_ok=True)
    for index, photo in enumerate(photos):
        for factor in factors:
            hr, lr = data.eval_pair(images[photo.name], factor)
            outputs = {}
            for method, run in runs.items():
                start = time.perf_counter()
                outputs[method] = run(lr, factor)
                seconds[method] += time.perf_counter() - start
                scores[method, factor].append((data.psnr(outputs[method], hr), data.ssim(outputs[method], hr)))
            if photo.name in crop_names:
                panels = {label: outputs[m] if m in outputs else upscaler(m, args.model)(lr, factor)
                          for label, m in columns.items()}
                panels["HR"] = hr
                y, x = busiest_window(hr, CROP_SIDE)
                side_by_side(panels, y, x).save(args.crops / f"{photo.name}-x{factor}.png")
        print(f"[{index + 1}/{len(photos)}] {photo.name}", file=sys.stderr)

    means = {key: tuple(np.mean(values, axis=0)) for key, values in scores.items()}
    print(f"Eval photos: {len(photos)} ({', '.join(p.name for p in photos)}); centre crop ≤{args.crop} px of "
          f"each at max side {args.max_side}; LR = PIL bicubic downscale (data.eval_pair).\n")
    print(table(means, methods, factors, delta=False))
    print("\nDelta vs bicubic:\n")
    print(table(means, [m for m in methods if m != "bicubic"], factors, delta=True))
    count = len(photos) * len(factors)
    print("\nSeconds per image: " + ", ".join(f"{m} {seconds[m] / count:.3f}" for m in methods))
    print(f"Crops: {args.crops}")


if __name__ == "__main__":
    main()
