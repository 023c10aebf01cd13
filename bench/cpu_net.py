"""The built-in network on the CPU (issue 21 item 4): speed per variant and what bf16 does to PSNR.

    python bench/cpu_net.py [--limit N] [--max-side 1600] [--crop 512] [--compile]

Speed: one network call on a 640x512 input (the main job's tile is twice that), CPU seconds (user + sys of
this process) per call, median of 5 after a warm-up, for float32 as the network is, channels-last, and
channels-last with bf16 convolutions (engine/builtin/cpu.py); with `--compile`, also torch.compile's first
call and its calls after. Quality: every eval photo (engine.builtin.data, as bench/quality.py: at most
--max-side, centre crop --crop, `eval_pair` at 2x) upscaled by `engine.upscale` with the built-in model in
float32 and with the CPU runner; PSNR of each against the original, and their difference.
"""

from __future__ import annotations

import argparse
import copy
import resource
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

import numpy as np  # noqa: E402
import torch  # noqa: E402

from engine.builtin import data  # noqa: E402
from engine.builtin.cpu import CpuRunner, compiled, fast_bf16, usable_cpus  # noqa: E402


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def per_call(fn, runs: int = 5) -> float:  # noqa: ANN001
    """Median CPU seconds of `fn()` over `runs` calls, after one warm-up."""
    fn()
    times = []
    for _ in range(runs):
        start = _cpu_s()
        fn()
        times.append(_cpu_s() - start)
    return statistics.median(times)


def speed(net: torch.nn.Module, with_compile: bool) -> list[tuple[str, float]]:
    generator = torch.Generator().manual_seed(0)
    x, up = (torch.rand(1, 3, 512, 640, generator=generator) * 2 - 1 for _ in range(2))
    sigma = torch.ones(1)
    rows = []
    with torch.no_grad():
        rows.append(("float32, as the network is", per_call(lambda: net(x, up, sigma))))
    variants = [("channels-last", False)] + ([("channels-last + bf16", True)] if fast_bf16() else [])
    for name, bf16 in variants:
        runner = CpuRunner(copy.deepcopy(net), bf16=bf16)
        rows.append((name, per_call(lambda r=runner: r(x, up, sigma))))
    if with_compile:
        runner = compiled(CpuRunner(copy.deepcopy(net)))
        start, wall = _cpu_s(), time.perf_counter()
        runner(x, up, sigma)
        rows.append((f"torch.compile: first call (wall {time.perf_counter() - wall:.1f} s)", _cpu_s() - start))
        rows.append(("torch.compile: calls after", per_call(lambda: runner(x, up, sigma))))
    return rows


def quality(limit: int | None, max_side: int, crop: int) -> list[tuple[str, float, float]]:
    from engine import upscale
    from engine.backends.loader import load_backend

    backend = load_backend("builtin", device="cpu")
    plain = backend.run_net
    rows = []
    for photo in data.eval_photos()[:limit]:
        hr = data.load(photo, max_side)
        top, left = max(0, (hr.shape[0] - crop) // 2), max(0, (hr.shape[1] - crop) // 2)
        hr, lr = data.eval_pair(np.ascontiguousarray(hr[top:top + crop, left:left + crop]), 2)
        scores = []
        for run_net in (lambda net: net, lambda net: CpuRunner(copy.deepcopy(net), bf16=True)):
            backend.run_net = run_net
            out = upscale(lr, scale=2, backend=backend, seed=0)
            scores.append(data.psnr(out, hr))
        backend.run_net = plain
        rows.append((photo.name, *scores))
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int)
    parser.add_argument("--max-side", type=int, default=1600)
    parser.add_argument("--crop", type=int, default=512)
    parser.add_argument("--compile", action="store_true", help="also time torch.compile (needs a C++ compiler)")
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--skip-quality", action="store_true")
    args = parser.parse_args(argv)
    from engine.backends.loader import load_backend

    print(f"CPU: {usable_cpus()} usable, torch {torch.get_num_threads()} threads, capability "
          f"{torch.backends.cpu.get_cpu_capability()}, fast bf16 (AMX or AVX-512 BF16): {fast_bf16()}\n")
    if not args.skip_speed:
        net = load_backend("builtin", device="cpu").net
        print("| variant (640x512 input) | CPU s per call |\n|---|---:|")
        for name, seconds in speed(net, args.compile):
            print(f"| {name} | {seconds:.3f} |", flush=True)
        print()
    if args.skip_quality:
        return
    rows = quality(args.limit, args.max_side, args.crop)
    print("| eval photo | PSNR float32 dB | PSNR channels-last + bf16 dB | difference dB |\n|---|---:|---:|---:|")
    for name, full, fast in rows:
        print(f"| {name} | {full:.3f} | {fast:.3f} | {fast - full:+.3f} |")
    mean_full, mean_fast = (statistics.mean(r[i] for r in rows) for i in (1, 2))
    worst = max(abs(r[2] - r[1]) for r in rows)
    print(f"| mean | {mean_full:.3f} | {mean_fast:.3f} | {mean_fast - mean_full:+.3f} "
          f"(largest per photo {worst:.3f}) |")


if __name__ == "__main__":
    main()
