"""Upscale quality on the built-in model's eval photos: PSNR, SSIM and block-grid ratio per method, input
and factor (issue 15), and crops to look at.

    python bench/quality.py [--methods bicubic,lanczos,v1,builtin@1,builtin@2,builtin@4,detailed@1,...]
                            [--inputs clean,jpeg60,jpeg90] [--factors 2,4] [--split eval|val] [--limit N]
                            [--max-side 1600] [--crop 512] [--model builtin|FOLDER] [--v1 FOLDER]
                            [--cache bench/out/quality/scores.json] [--crops bench/out/quality]

Each photo of the split (engine.builtin.data) is loaded at --max-side, centre-cropped to at most --crop
square, and turned into (HR, LR) by `data.eval_pair` (PIL bicubic downscale); the jpegQ inputs then pass LR
once through Pillow's JPEG at quality Q. Every method upscales LR back and is scored against HR with
`data.psnr` (RGB, 8-bit, whole image), `data.ssim` (BT.601 luma, Gaussian 11x11, sigma 1.5) and
`metrics.block_grid_ratio` (luma steps across the LR's 8-px block borders, 8 x factor px in the output, over
the steps elsewhere; about 1.0 without a grid). Methods: `bicubic` (PIL), `lanczos` (the engine's
conventional upscale), `v1` (the v1 weights in --v1, default 1 step), `builtin[@N]` (the model in --model at
its default or N steps: v2 faithful), `detailed[@N]` (the same with preset creative: v2 detailed), all
through `engine.upscale(..., seed=0)`. Scores are cached per method, weights file, input, factor and photo,
so a second run only computes what changed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

from engine.builtin import data, degradations  # noqa: E402
from engine.builtin.backend import WEIGHTS, WEIGHTS_FILE  # noqa: E402
from engine.builtin.metrics import block_grid_ratio  # noqa: E402
from engine.pixels import conventional_resize  # noqa: E402

DEFAULT_METHODS = "bicubic,lanczos,v1,builtin@1,builtin@2,builtin@4,detailed@1,detailed@2,detailed@4"
DEFAULT_INPUTS = "clean,jpeg60,jpeg90"
METRICS = "m2"  # part of the cache key: bump when a metric's definition changes
V1_FOLDER = ROOT / "runs" / "v1"  # `git show ebfb74f:engine/builtin/weights/<file>` for both files
CROP_PHOTOS = 3  # the most detailed eval photos get side-by-side crops
CROP_SIDE = 128  # HR pixels per crop, shown enlarged 2x


def _bicubic(lr: np.ndarray, factor: int) -> np.ndarray:
    size = (lr.shape[1] * factor, lr.shape[0] * factor)
    planes = [Image.fromarray(np.ascontiguousarray(lr[:, :, c]), mode="F").resize(size, Image.Resampling.BICUBIC)
              for c in range(3)]
    return np.stack([np.asarray(plane) for plane in planes], axis=2).clip(0.0, 1.0)


def _lanczos(lr: np.ndarray, factor: int) -> np.ndarray:
    return conventional_resize(lr, (lr.shape[1] * factor, lr.shape[0] * factor))


def _builtin(steps: int | None, model: str = "builtin", preset: str | None = None,
             ) -> Callable[[np.ndarray, int], np.ndarray]:
    def run(lr: np.ndarray, factor: int) -> np.ndarray:
        import engine

        pixels = np.round(lr * 255.0).astype(np.uint8)  # what a user's 8-bit file gives the engine
        try:
            out = engine.upscale(pixels, scale=factor, steps=steps, seed=0, model=model, preset=preset)
        except Exception as exc:
            raise SystemExit(f"the built-in model {model!r} failed ({type(exc).__name__}: {exc}); "
                             "without it, run with --methods bicubic,lanczos") from exc
        return np.asarray(out, dtype=np.float32) / 255.0

    return run


def _parse(method: str) -> tuple[str, int | None]:
    name, _, steps = method.partition("@")
    if name not in ("bicubic", "lanczos", "v1", "builtin", "detailed") or (steps and not steps.isdigit()) \
            or (steps and int(steps) < 1):
        raise SystemExit(f"unknown method {method!r}; use bicubic, lanczos, v1[@N], builtin[@N] or detailed[@N]")
    return name, int(steps) if steps else None


def upscaler(method: str, model: str = "builtin", v1: Path = V1_FOLDER) -> Callable[[np.ndarray, int], np.ndarray]:
    """`(lr, factor) -> sr` for a method name: bicubic, lanczos, v1[@N], builtin[@N] or detailed[@N]."""
    name, steps = _parse(method)
    if name == "bicubic":
        return _bicubic
    if name == "lanczos":
        return _lanczos
    if name == "v1":
        return _builtin(steps, str(v1))
    return _builtin(steps, model, "creative" if name == "detailed" else None)


def weights_of(method: str, model: str, v1: Path) -> str:
    """A short hash of the weights a method runs (part of the cache key), '' for the conventional ones."""
    import hashlib

    name, _ = _parse(method)
    if name in ("bicubic", "lanczos"):
        return ""
    folder = v1 if name == "v1" else WEIGHTS if model == "builtin" else Path(model)
    return hashlib.sha256((folder / WEIGHTS_FILE).read_bytes()).hexdigest()[:12]


def make_input(lr: np.ndarray, kind: str) -> np.ndarray:
    """The clean LR, or it through one JPEG at the quality in the name (jpeg60 -> quality 60)."""
    if kind == "clean":
        return lr
    if kind.startswith("jpeg") and kind[4:].isdigit() and 1 <= int(kind[4:]) <= 100:
        return degradations.jpeg(lr, int(kind[4:]))
    raise SystemExit(f"unknown input {kind!r}; use clean or jpegQ (Q = JPEG quality 1-100)")


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


def table(means: dict[tuple[str, str, int], tuple[float, float, float]], methods: list[str], inputs: list[str],
          factor: int) -> str:
    """One factor: a row per method, for each input PSNR (and its gain over bicubic), SSIM and grid ratio."""
    head = "| method | " + " | ".join(f"{k} PSNR | {k} Δbic | {k} SSIM | {k} grid" for k in inputs) + " |"
    rows = [head, "|---|" + "---:|" * (4 * len(inputs))]
    for method in methods:
        cells = []
        for kind in inputs:
            p, s, g = means[method, kind, factor]
            cells += [f"{p:.2f}", f"{p - means['bicubic', kind, factor][0]:+.2f}", f"{s:.4f}", f"{g:.3f}"]
        rows.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default=DEFAULT_METHODS, help=f"comma-separated (default {DEFAULT_METHODS})")
    parser.add_argument("--inputs", default=DEFAULT_INPUTS, help=f"comma-separated (default {DEFAULT_INPUTS})")
    parser.add_argument("--factors", default="2,4", help="comma-separated whole factors (default 2,4)")
    parser.add_argument("--split", choices=("eval", "val"), default="eval",
                        help="eval: the reported split; val: the validation photos, for choosing recipes")
    parser.add_argument("--limit", type=int, default=None, help="only the first N photos")
    parser.add_argument("--max-side", type=int, default=1600, help="photos are area-downscaled to this first")
    parser.add_argument("--crop", type=int, default=512, help="centre crop of each photo, HR pixels (default 512)")
    parser.add_argument("--model", default="builtin",
                        help="weights for builtin/detailed: 'builtin' or a training run's export folder")
    parser.add_argument("--v1", type=Path, default=V1_FOLDER, help="folder with the v1 weights (method v1)")
    parser.add_argument("--cache", type=Path, default=ROOT / "bench" / "out" / "quality" / "scores.json",
                        help="JSON of scores already measured (delete it to measure all again)")
    parser.add_argument("--crops", type=Path, default=ROOT / "bench" / "out" / "quality",
                        help="folder for the side-by-side PNGs (default bench/out/quality)")
    args = parser.parse_args(argv)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    inputs = [k.strip() for k in args.inputs.split(",") if k.strip()]
    factors = [int(f) for f in args.factors.split(",")]
    if "bicubic" not in methods:
        methods.insert(0, "bicubic")  # the reference every delta is taken against
    runs = {method: upscaler(method, args.model, args.v1) for method in methods}
    keys = {method: f"{method}:{weights_of(method, args.model, args.v1)}" for method in methods}
    cache = json.loads(args.cache.read_text()) if args.cache.is_file() else {}

    photos = (data.eval_photos() if args.split == "eval" else data.validation_photos())[: args.limit]
    images = {photo.name: centre_crop(data.load(photo, args.max_side), args.crop) for photo in photos}
    # Crops of the most detailed photos: on flat sky every upscaler looks the same.
    crop_names = sorted(images, key=lambda name: -float(detail(images[name]).mean()))[:CROP_PHOTOS]
    scores: dict[tuple[str, str, int], list[tuple[float, float, float]]] = defaultdict(list)
    seconds: dict[str, list[float]] = defaultdict(list)
    args.crops.mkdir(parents=True, exist_ok=True)
    args.cache.parent.mkdir(parents=True, exist_ok=True)
    for index, photo in enumerate(photos):
        for factor in factors:
            hr, clean = data.eval_pair(images[photo.name], factor)
            for kind in inputs:
                lr = make_input(clean, kind)
                outputs = {}
                for method, run in runs.items():
                    key = f"{keys[method]}|{METRICS}|{args.crop}|{args.max_side}|{kind}|x{factor}|{photo.name}"
                    want_crop = photo.name in crop_names and kind != "jpeg90"
                    if key not in cache or want_crop:
                        start = time.perf_counter()
                        outputs[method] = run(lr, factor)
                        seconds[method].append(time.perf_counter() - start)
                        cache[key] = [data.psnr(outputs[method], hr), data.ssim(outputs[method], hr),
                                      block_grid_ratio(outputs[method], factor)]
                    scores[method, kind, factor].append(tuple(cache[key]))
                args.cache.write_text(json.dumps(cache, indent=0))
                if photo.name in crop_names and kind != "jpeg90":
                    panels = {method: outputs[method] for method in methods if method != "bicubic"}
                    panels["HR"] = hr
                    y, x = busiest_window(hr, CROP_SIDE)
                    side_by_side(panels, y, x).save(args.crops / f"{photo.name}-{kind}-x{factor}.png")
        print(f"[{index + 1}/{len(photos)}] {photo.name}", file=sys.stderr)

    means = {key: tuple(np.mean(values, axis=0)) for key, values in scores.items()}
    print(f"{args.split} photos: {len(photos)} ({', '.join(p.name for p in photos)}); centre crop ≤{args.crop} px "
          f"of each at max side {args.max_side}; LR = PIL bicubic downscale (data.eval_pair), jpegQ = then one "
          "JPEG at quality Q. Δbic: PSNR gain over bicubic on the same input; grid: block-grid ratio.")
    for factor in factors:
        print(f"\n×{factor}\n")
        print(table(means, methods, inputs, factor))
    measured = {m: f"{np.mean(t):.2f}" for m, t in seconds.items() if t}
    if measured:
        print("\nSeconds per upscale (this run's, on a shared machine): "
              + ", ".join(f"{m} {t}" for m, t in measured.items()))
    print(f"Crops: {args.crops}")


if __name__ == "__main__":
    main()
