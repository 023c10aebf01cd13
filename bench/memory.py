"""Memory per mode and format: peak RSS of the tiny models on this machine, and the VRAM plan of the real ones.

    python bench/memory.py [--families flux-dev,flux2-klein,z-image] [--skip-rss] [--gpu-table]

1. Tiny models (the test fixtures, random weights) on the CPU, each run in its own process so that its peak RSS
   (ru_maxrss) is its own: per dtype and memory mode (diffusers' hooks installed with the CPU as the "device",
   which proves they run with our calls but saves nothing on a machine without a GPU), a first job that loads the
   text encoders, then a second process whose prompt is cached and never loads them. Sequential offload is left
   out: accelerate 1.16's hook fails on the CPU under torch 2.13.
2. The real sizes (FLUX.1-dev, FLUX.2 Klein 4B / 9B, Qwen-Image, Z-Image, SD3.5 Large): peak device memory per
   transformer format and memory mode, from the meta-device plan (engine.memory_plan), 1024-pixel tiles, bf16
   compute, CUDA attention kernels. Exact weight bytes, estimated activations.
3. `--gpu-table`: the README's "Which model for my GPU" table, from the same plans.
Prints markdown.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

TINY_MODES = ("gpu", "model-offload", "group-offload")
REAL_MODELS = ("black-forest-labs/FLUX.2-klein-4B", "Tongyi-MAI/Z-Image-Turbo", "black-forest-labs/FLUX.2-klein-9B",
               "black-forest-labs/FLUX.1-dev", "stabilityai/stable-diffusion-3.5-large", "Qwen/Qwen-Image")
REAL_FORMATS = ("bf16", "fp8", "Q8_0", "Q6_K", "Q4_K")
PREFERRED = ("bf16", "Q8_0", "fp8", "Q6_K", "Q4_K")  # closest to the original weights first
CARDS_GIB = (8, 12, 16, 24)
DESKTOP_GIB = 0.7  # what a desktop session and the CUDA context leave unused on a card
APPLE_GIB = (16, 32)
APPLE_SHARE = 2 / 3  # torch.mps.recommended_max_memory() is about this share of the unified memory


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def worker(folder: str, dtype: str, mode: str, cache: str, prompt: str) -> dict[str, float]:
    """One job in this process: RSS after imports, after loading, and at the job's peak."""
    import os

    os.environ["UPREZ_CACHE_DIR"] = cache
    import numpy as np
    import torch

    from engine import upscale
    from engine.backends.loader import load_backend
    from engine.memory_modes import apply_mode

    torch.set_num_threads(2)
    imported = _rss_mib()
    backend = load_backend(folder, device="cpu", dtype=dtype)
    apply_mode(backend.pipe, mode, torch.device("cpu"))
    loaded = _rss_mib()
    image = np.random.default_rng(0).integers(0, 256, (96, 96, 3), dtype=np.uint8)
    upscale(image, backend=backend, scale=2, seed=0, prompt=prompt)
    return {"imported": imported, "loaded": loaded, "peak": _rss_mib(),
            "encoder_loads": backend.text_encoders.loads if backend.text_encoders else -1}


def _run_worker(folder: Path, dtype: str, mode: str, cache: Path, prompt: str) -> dict[str, float]:
    done = subprocess.run([sys.executable, __file__, "--worker", str(folder), dtype, mode, str(cache), prompt],
                          capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        raise RuntimeError(f"worker failed: {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def tiny_rss_table(families: list[str]) -> str:
    from engine.testing.tiny_models import save_tiny_model

    rows = ["| model | dtype | mode | RSS after imports MiB | after load | peak, prompt new | peak, prompt cached "
            "| text encoder loads (new / cached) |", "|---|---|---|---:|---:|---:|---:|---|"]
    with tempfile.TemporaryDirectory() as tmp:
        for family in families:
            folder = save_tiny_model(family, Path(tmp) / family)
            for dtype in ("float32", "bfloat16"):
                for mode in TINY_MODES:
                    cache = Path(tmp) / f"cache-{family}-{dtype}-{mode}"
                    first = _run_worker(folder, dtype, mode, cache, "a photo of a cat")
                    second = _run_worker(folder, dtype, mode, cache, "a photo of a cat")
                    rows.append(f"| {family} | {dtype} | {mode} | {first['imported']:.0f} | {first['loaded']:.0f} | "
                                f"{first['peak']:.0f} | {second['peak']:.0f} | {first['encoder_loads']:.0f} / "
                                f"{second['encoder_loads']:.0f} |")
                    print(rows[-1], file=sys.stderr, flush=True)
    return "\n".join(rows)


def real_plan_table() -> str:
    from engine.memory_plan import MODES, plan_model

    rows = ["| model | transformer format | transformer GiB | text encoders GiB (bf16) | "
            + " | ".join(MODES) + " |", "|---|---|---:|---:|" + "---:|" * len(MODES)]
    for repo_id in REAL_MODELS:
        for fmt in REAL_FORMATS:
            plan = plan_model(repo_id, weight_format=fmt)
            transformer = next(c for c in plan.components if c.name == "transformer")
            peaks = " | ".join(f"{plan.peak(mode) / 2**30:.1f}" for mode in MODES)
            rows.append(f"| {repo_id.split('/')[1]} | {fmt} | {transformer.total / 2**30:.1f} | "
                        f"{plan.text_bytes / 2**30:.1f} | {peaks} |")
    return "\n".join(rows)


def gpu_table() -> str:
    """Per card size: for each model the highest-precision format that runs all on the GPU, else the first format
    and mode that fit. Apple silicon: offloading to "CPU" memory frees nothing (it is the same memory), and fp8
    needs CUDA, so only all-on-the-GPU with bf16/fp16 or GGUF counts, within MPS's share of the memory."""
    from engine.memory_plan import MODES, SAFETY, plan_model

    plans = {(repo_id, fmt): plan_model(repo_id, weight_format=fmt) for repo_id in REAL_MODELS for fmt in REAL_FORMATS}
    header = "| GPU | " + " | ".join(repo_id.split("/")[1] for repo_id in REAL_MODELS) + " |"
    rows = [header, "|---|" + "---|" * len(REAL_MODELS)]

    def cell(repo_id: str, free: int, formats: tuple[str, ...], modes: tuple[str, ...]) -> str:
        all_on = next((fmt for fmt in formats if plans[repo_id, fmt].peak("gpu") + SAFETY <= free), None)
        if all_on is not None:
            return f"{all_on}, gpu"
        best = next(((fmt, mode) for fmt in formats for mode in modes[1:]
                     if plans[repo_id, fmt].peak(mode) + SAFETY <= free), None)
        return f"{best[0]}, {best[1]}" if best else "no"

    for card in CARDS_GIB:
        free = int((card - DESKTOP_GIB) * 2**30)
        rows.append(f"| {card} GB | " + " | ".join(cell(r, free, PREFERRED, MODES) for r in REAL_MODELS) + " |")
    for memory in APPLE_GIB:
        free = int(memory * APPLE_SHARE * 2**30)
        formats = tuple(fmt for fmt in PREFERRED if fmt != "fp8")
        rows.append(f"| Apple silicon, {memory} GB | "
                    + " | ".join(cell(r, free, formats, ("gpu",)) for r in REAL_MODELS) + " |")
    rows.append("| CPU only | the built-in model (seconds); the others run, minutes per image |"
                + " |" * (len(REAL_MODELS) - 1))
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", nargs=5, metavar=("FOLDER", "DTYPE", "MODE", "CACHE", "PROMPT"),
                        help=argparse.SUPPRESS)
    parser.add_argument("--families", default="flux-dev,flux2-klein,z-image")
    parser.add_argument("--skip-rss", action="store_true", help="only the plan tables (seconds, not minutes)")
    parser.add_argument("--gpu-table", action="store_true", help="also the README's Which-model-for-my-GPU table")
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(*args.worker)))
        return 0
    from engine.backends.loader import quiet_libraries

    quiet_libraries()
    if not args.skip_rss:
        print("### Tiny models on the CPU: peak RSS per dtype and memory mode\n")
        print(tiny_rss_table(args.families.split(",")))
        print()
    print("### Real sizes: peak GPU memory (GiB) per transformer format and memory mode, from the meta-device plan\n")
    print(real_plan_table())
    if args.gpu_table:
        print("\n### Which model for my GPU\n")
        print(gpu_table())
    return 0


if __name__ == "__main__":
    sys.exit(main())
