"""SR model as the flow upscale's first stage: which refine strength, and first stage only or every stage.

    python bench/sr_refine.py [--sr bench/artefacts/compact-x2-uprez.safetensors] [--factors 2,4]
                              [--strengths 0.5,0.7,0.85,1.0] [--limit N] [--crop 512] [--threads 1]
                              [--json scores.json] [--refiner builtin|MODEL] [--preset balanced]

On the built-in model's eval photos (engine.builtin.data; never trained on, by the built-in model or by the SR
model of bench/sr_train.py), each centre-cropped to --crop px and turned into (HR, LR) by `data.eval_pair`
(bicubic downscale), every method upscales LR and is scored against HR: PSNR (RGB, 8-bit) and SSIM (luma) with
the pinned `data.psnr` / `data.ssim`, and the high-band ratio: the energy of (image - its Gaussian blur,
sigma 1.5) over HR's, 1.0 meaning as much fine detail as the original, below 1 smoother, above 1 sharper or
noisier than it. Methods:

- `lanczos`: the engine's conventional upscale; `builtin`: the built-in flow model alone (its defaults);
- `sr`: the SR model alone (engine.sr.resize.sr_resize: its factor once or twice, then Lanczos);
- `sr+builtin@F`: the SR model as the first stage's upsample (`upsampler=`), the refiner (--refiner, the
  built-in model by default; rows are still named `builtin`) at F x its --preset's strength (the built-in
  presets' strength is 1.0, so there F is the strength);
- `sr-every+builtin@F` (x4, built-in refiner only): the SR model at every stage. The engine runs it at the
  first only, so this is two 2x jobs chained, each with `upsampler=`. The built-in model uses no cross-stage
  guidance, so a chain of 2x jobs is the same computation as one 4x job; the script checks that on the Lanczos
  path (`builtin` 4x against `builtin` 2x twice) and prints the largest difference. A big model's structure
  guidance follows the stage before, so for it a chain is not the same job and the rows are left out.

The built-in model is the only real flow model on this machine; with a big model on a GPU machine, e.g.
`--refiner black-forest-labs/FLUX.1-dev --sr OmniSR_X2_DIV2K.safetensors`, the same table measures its factor.
Times are per image on the machine this was run on.
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

from engine.builtin import data  # noqa: E402
from engine.pixels import conventional_resize  # noqa: E402

DEFAULT_SR = ROOT / "bench" / "artefacts" / "compact-x2-uprez.safetensors"
Upscaler = Callable[[np.ndarray, int], np.ndarray]


def centre_crop(image: np.ndarray, side: int) -> np.ndarray:
    height, width = image.shape[:2]
    h, w = min(side, height), min(side, width)
    y, x = (height - h) // 2, (width - w) // 2
    return image[y : y + h, x : x + w]


def high_band(image: np.ndarray) -> float:
    """Mean squared luma of image minus its Gaussian blur (sigma 1.5 px): the fine detail's energy."""
    luma = np.asarray(image, dtype=np.float64)[:, :, :3] @ np.array([0.299, 0.587, 0.114])
    taps = np.exp(-0.5 * (np.arange(-5, 6) / 1.5) ** 2)
    taps /= taps.sum()
    padded = np.pad(luma, 5, mode="reflect")
    rows = sum(t * padded[i : i + luma.shape[0]] for i, t in enumerate(taps))
    blurred = sum(t * rows[:, i : i + luma.shape[1]] for i, t in enumerate(taps))
    return float(np.mean((luma - blurred) ** 2))


def _as_uint8(lr: np.ndarray) -> np.ndarray:
    return np.round(lr * 255.0).astype(np.uint8)  # what a user's 8-bit file gives the engine


def _flow(factor_scale: int | None = None, model: str = "builtin", **settings) -> Upscaler:
    """A flow model through engine.upscale; `factor_scale` chains 2x jobs instead of one job."""
    import engine

    def run(lr: np.ndarray, factor: int) -> np.ndarray:
        pixels = _as_uint8(lr)
        jobs = [factor] if factor_scale is None else [factor_scale] * round(np.log(factor) / np.log(factor_scale))
        for scale in jobs:
            pixels = np.asarray(engine.upscale(pixels, scale=scale, seed=0, model=model, **settings))
        return pixels.astype(np.float32) / 255.0

    return run


def _sr_alone(path: Path) -> Upscaler:
    from engine.sr.load import get_sr_model
    from engine.sr.resize import sr_resize

    model = get_sr_model(path, device="cpu")

    def run(lr: np.ndarray, factor: int) -> np.ndarray:
        out = sr_resize(model, lr, (lr.shape[1] * factor, lr.shape[0] * factor))
        return np.round(out * 255.0) / 255.0  # 8-bit, as the job writes it

    return run


def preset_strength(model: str, preset: str) -> float:
    """The strength `preset` gives `model` with a Lanczos start (what the SR factor multiplies)."""
    from engine.api import get_backend
    from engine.settings import ModelSpec

    backend = get_backend(ModelSpec(model))
    return float(backend.presets.get(preset, {}).get("strength", backend.default_strength))


def methods(sr: Path, factors: list[float], factor: int, refiner: str = "builtin",
            preset: str = "balanced") -> dict[str, Upscaler]:
    base = preset_strength(refiner, preset)
    runs: dict[str, Upscaler] = {
        "lanczos": lambda lr, f: conventional_resize(lr, (lr.shape[1] * f, lr.shape[0] * f)),
        "builtin": _flow(model=refiner, preset=preset),
        "sr": _sr_alone(sr),
    }
    for share in factors:
        runs[f"sr+builtin@{share:g}"] = _flow(model=refiner, preset=preset, upsampler=str(sr),
                                              strength=round(base * share, 4))
    if factor == 4 and refiner == "builtin":
        for share in factors:
            runs[f"sr-every+builtin@{share:g}"] = _flow(2, model=refiner, preset=preset, upsampler=str(sr),
                                                       strength=round(base * share, 4))
    return runs


def check_chain(lr: np.ndarray) -> int:
    """Largest difference in 8-bit levels between the built-in model's 4x job and two chained 2x jobs."""
    one, chained = _flow()(lr, 4), _flow(2)(lr, 4)
    return int(np.abs(np.round(one * 255) - np.round(chained * 255)).max())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sr", type=Path, default=DEFAULT_SR, help="the SR model (default: bench/sr_train.py's)")
    parser.add_argument("--factors", default="2,4")
    parser.add_argument("--strengths", default="0.5,0.7,0.85,1.0", help="shares of the preset's strength")
    parser.add_argument("--refiner", default="builtin", help="the flow model that refines (default builtin)")
    parser.add_argument("--preset", default="balanced", help="whose strength the shares multiply")
    parser.add_argument("--limit", type=int, default=None, help="only the first N eval photos")
    parser.add_argument("--max-side", type=int, default=1600)
    parser.add_argument("--crop", type=int, default=512)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path, help="also write every photo's scores here (for paired comparisons)")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    if not args.sr.is_file():  # a name from the SR folders (`uprez models list`), as --upsampler takes
        from engine.errors import InvalidInput
        from engine.sr.find import resolve_upsampler

        try:
            args.sr = resolve_upsampler(str(args.sr))
        except InvalidInput as exc:
            raise SystemExit(f"{exc}; or train one with: python bench/sr_train.py --out runs/sr") from exc
    factors = [int(f) for f in args.factors.split(",")]
    strengths = [float(s) for s in args.strengths.split(",")]
    photos = data.eval_photos()[: args.limit]
    scores: dict[tuple[str, int], list[tuple[float, float, float]]] = defaultdict(list)
    seconds: dict[tuple[str, int], float] = defaultdict(float)
    order: dict[int, list[str]] = {}
    chain_diff = None
    for index, photo in enumerate(photos):
        image = centre_crop(data.load(photo, args.max_side), args.crop)
        for factor in factors:
            hr, lr = data.eval_pair(image, factor)
            reference = high_band(hr)
            runs = methods(args.sr, strengths, factor, args.refiner, args.preset)
            order[factor] = list(runs)
            for name, run in runs.items():
                start = time.perf_counter()
                out = run(lr, factor)
                seconds[name, factor] += time.perf_counter() - start
                scores[name, factor].append((data.psnr(out, hr), data.ssim(out, hr), high_band(out) / reference))
            if factor == 4 and index == 0 and args.refiner == "builtin":
                chain_diff = check_chain(lr)
        print(f"[{index + 1}/{len(photos)}] {photo.name}", file=sys.stderr, flush=True)

    names = ", ".join(p.name for p in photos)
    print(f"SR model: {args.sr.name}; refiner: {args.refiner} ({args.preset} strength "
          f"{preset_strength(args.refiner, args.preset):g} x the shares); eval photos: {len(photos)} ({names}); "
          f"centre crop <={args.crop} px at max side {args.max_side}; LR = bicubic downscale; seed 0; "
          f"{args.threads} thread(s)\n")
    for factor in factors:
        lanczos = np.array(scores["lanczos", factor])[:, 0]
        builtin = np.array(scores["builtin", factor])[:, 0]
        print(f"x{factor}\n\n| method | PSNR | SSIM | high band / HR's | beats Lanczos | beats built-in | s / image |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        for name in order[factor]:
            values = np.array(scores[name, factor])
            p, s, h = values.mean(axis=0)
            wins = int((values[:, 0] > lanczos + 1e-9).sum()), int((values[:, 0] > builtin + 1e-9).sum())
            print(f"| {name} | {p:.2f} | {s:.4f} | {h:.2f} | {wins[0]}/{len(values)} | {wins[1]}/{len(values)} "
                  f"| {seconds[name, factor] / len(values):.2f} |")
        print()
    paired = [("sr+builtin", "builtin"), ("sr+builtin", "sr")] + [
        ("sr-every+builtin", "sr+builtin")] * (4 in factors)
    for factor in factors:
        for name, against in paired:
            for strength in strengths:
                a = f"{name}@{strength:g}"
                b = against if against in ("builtin", "sr") else f"{against}@{strength:g}"
                if (a, factor) in scores and (b, factor) in scores:
                    diff = np.array(scores[a, factor])[:, 0] - np.array(scores[b, factor])[:, 0]
                    print(f"x{factor} {a} - {b}: PSNR {diff.mean():+.2f} dB (photos {diff.min():+.2f} to "
                          f"{diff.max():+.2f}, better on {int((diff > 0).sum())}/{len(diff)})")
    if args.json:
        args.json.write_text(json.dumps({f"{name} x{factor}": values for (name, factor), values in scores.items()},
                                        indent=1))
    if chain_diff is not None:
        print(f"Check: built-in 4x in one job vs two chained 2x jobs, first photo: max difference {chain_diff} levels")


if __name__ == "__main__":
    main()
