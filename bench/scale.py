"""Output size against time and memory: Uprez (progressive, tiled) next to a one-shot img2img at the target.

    python bench/scale.py [--megapixels 1,4,16] [--model FOLDER] [--timeout 900]

Each run is its own process, so its peak RSS (ru_maxrss) and its CPU seconds (user and system, the job only)
are its own; it sets up the allocator as the CLI does
(engine/allocator.py). The input is the bundled sample
photo resized to a quarter of the output side; Uprez upscales it 4x in two 2x stages with tiles of the
model's native size; the one-shot run Lanczos-upscales it to the target, then re-noises, denoises and
decodes that whole latent in one piece with the same model, strength and schedule. Without --model, a
tiny random FLUX.1-dev (the test fixture, built into bench/out/tiny-flux) runs on the CPU: the figures
show how the engine's own time and memory scale, not a real model's. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def run_one(mode: str, megapixels: float, model: str, seed: int = 0) -> dict[str, float]:
    """One upscale in this process; returns wall seconds, RSS before and at peak, model calls and tokens."""
    from dataclasses import replace

    import numpy as np
    import torch
    from PIL import Image

    from engine.backends.loader import load_backend
    from engine.pipeline import run_stages
    from engine.recipe import resolve
    from engine.schedule import remaining_sigmas
    from engine.settings import StructureGuidance, UpscaleSettings
    from engine.stages import Stage
    from engine.tile_grid import TileGrid

    torch.set_num_threads(2)
    side = int(round((megapixels * 2**20) ** 0.5))
    with Image.open(ROOT / "engine" / "data" / "sample.jpg") as image:
        small = image.convert("RGB").resize((side // 4, side // 4), Image.Resampling.LANCZOS)
    rgb = np.asarray(small, dtype=np.float32) / 255.0
    backend = load_backend(model, device="cpu")
    calls = {"velocity": 0, "tokens": 0, "model_s": 0.0}
    velocity, encode, decode = backend.velocity, backend.encode, backend.decode

    def timed(fn):  # noqa: ANN001, ANN202 - model and VAE time, to tell the engine's own overhead apart
        def call(*args):  # noqa: ANN002, ANN202
            start = time.perf_counter()
            try:
                return fn(*args)
            finally:
                calls["model_s"] += time.perf_counter() - start
        return call

    def counted(x, sigma, cond):  # noqa: ANN001, ANN202
        calls["velocity"] += 1
        calls["tokens"] += backend.tokens_for(x.shape[-2], x.shape[-1]) * x.shape[0]
        return velocity(x, sigma, cond)

    backend.velocity, backend.encode, backend.decode = timed(counted), timed(encode), timed(decode)
    recipe = resolve(UpscaleSettings(scale=4, seed=seed), backend, size=(rgb.shape[1], rgb.shape[0]))
    recipe = replace(recipe, guidance=StructureGuidance())  # the plain loop, as this benchmark has always run
    cond = backend.encode_prompt("")
    before = _peak_rss_mib()
    cpu_before = resource.getrusage(resource.RUSAGE_SELF)
    start = time.perf_counter()
    if mode != "uprez":
        m = backend.latent_multiple
        latent_hw = (-(-side // m) * m // backend.vae_scale,) * 2
        sigmas = remaining_sigmas(recipe.steps, recipe.strength, backend.shift_rule, backend.native_tokens)
        recipe = replace(recipe, stages=(Stage((side, side), latent_hw, tuple(sigmas)),),
                         grid=TileGrid(tile=10**6, overlap=0, multiple=backend.patch_size))  # never tiles
    out = run_stages(rgb, recipe, backend=backend, cond=cond)
    wall = time.perf_counter() - start
    cpu = resource.getrusage(resource.RUSAGE_SELF)
    assert out.shape[:2] == (side, side)
    return {"wall_s": wall, "user_s": cpu.ru_utime - cpu_before.ru_utime, "sys_s": cpu.ru_stime - cpu_before.ru_stime,
            "rss_before_mib": before, "peak_rss_mib": _peak_rss_mib(),
            "velocity_calls": calls["velocity"], "tokens": calls["tokens"], "output_mib": out.nbytes / 2**20,
            "overhead": 1.0 - calls["model_s"] / wall}


def tiny_flux() -> str:
    from engine.testing.tiny_models import save_tiny_model

    folder = ROOT / "bench" / "out" / "tiny-flux"
    if not (folder / "model_index.json").is_file():
        save_tiny_model("flux-dev", folder)
    return str(folder)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megapixels", default="1,4,16", help="output sizes in MP (square), comma-separated")
    parser.add_argument("--modes", default="uprez,one-shot")
    parser.add_argument("--model", help="a model folder (default: the tiny random FLUX fixture)")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per run before it counts as failed")
    parser.add_argument("--one", nargs=2, metavar=("MODE", "MP"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    model = args.model or tiny_flux()
    if args.one:
        from engine.allocator import tune_allocator

        tune_allocator()  # as the CLI and the server do at start (UPREZ_MALLOC=system: glibc's defaults)
        print(json.dumps(run_one(args.one[0], float(args.one[1]), model)))
        return
    rows = ["| output | mode | wall s | user s | sys s | peak RSS MiB | RSS before job MiB | output buffer MiB | "
            "model calls | tokens / output MP | time outside model and VAE |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for mp in (float(x) for x in args.megapixels.split(",")):
        for mode in args.modes.split(","):
            command = [sys.executable, __file__, "--model", model, "--one", mode, str(mp)]
            try:
                done = subprocess.run(command, capture_output=True, text=True, timeout=args.timeout)
            except subprocess.TimeoutExpired:
                rows.append(f"| {mp:g} MP | {mode} | > {args.timeout:.0f} (stopped) | | | | | | | | |")
                continue
            if done.returncode != 0:
                reason = (done.stderr.strip().splitlines() or ["?"])[-1][:80]
                rows.append(f"| {mp:g} MP | {mode} | failed: {reason} | | | | | | | | |")
                continue
            r = json.loads(done.stdout.strip().splitlines()[-1])
            rows.append(f"| {mp:g} MP | {mode} | {r['wall_s']:.1f} | {r['user_s']:.1f} | {r['sys_s']:.1f} | "
                        f"{r['peak_rss_mib']:.0f} | "
                        f"{r['rss_before_mib']:.0f} | {r['output_mib']:.0f} | {r['velocity_calls']} | "
                        f"{r['tokens'] / mp:,.0f} | {r['overhead']:.0%} |")
            print(rows[-1], file=sys.stderr)
    print(f"Model: {model}; input = sample.jpg at a quarter of the output side, 4x; CPU, 2 threads.\n")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
