"""The Ray cluster (issue 19) on 1 and 2 workers: a 16-image batch, and one 16 MP upscale whose tiles are split.

    python bench/cluster.py [--images 16] [--batch-side 256] [--big-side 2048] [--workers 1,2]

A local Ray with one CPU worker per CPU asked for (`uprez upscale --cluster auto --cluster-workers N` starts the
same), the built-in model at its defaults (one step; 1088 px tiles, so a 4096 px output is 4 x 4 tiles, shared
out per step over the workers; the lead also does the Lanczos upsample and the composite alone). The bundled
photo, resized: `--images` copies of `--batch-side` px (x2 each), and one of `--big-side` px (x2: 2048 -> 16 MP).

Printed per worker count: the start (Ray up, workers started and the model loaded), the batch's wall time, the
big image's, and their ratio to one worker; and whether the big image's bytes equal one worker's. Wall times
exclude the start: a server starts its workers once.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing


def photo(side: int) -> np.ndarray:
    with Image.open(ROOT / "engine" / "data" / "sample.jpg") as image:
        return np.asarray(image.convert("RGB").resize((side, side), Image.Resampling.LANCZOS))


def run(workers: int, images: list[np.ndarray], big: np.ndarray) -> dict[str, object]:
    import ray
    from ray.util import ActorPool

    from engine.cluster.start import ClusterPlan
    from engine.cluster.worker import start_workers
    from engine.server.config import ServerConfig
    from engine.settings import UpscaleSettings

    began = time.perf_counter()
    config = ServerConfig(model="builtin", device="cpu")
    actors = start_workers(ClusterPlan(workers, 0.0, 1.0), config)
    ray.get([actor.warmup.remote() for actor in actors])
    started = time.perf_counter() - began
    settings = UpscaleSettings(scale=2.0)
    try:
        began = time.perf_counter()
        pool = ActorPool(actors)

        def submit(actor, item):  # noqa: ANN001, ANN202 - ActorPool's callback
            index, pixels = item
            others = [other for other in actors if other is not actor]
            return actor.upscale.remote(f"batch-{index}", pixels, settings, "builtin", {}, others)

        done = list(pool.map_unordered(submit, enumerate(images)))
        batch = time.perf_counter() - began
        assert len(done) == len(images)
        began = time.perf_counter()
        _, out = ray.get(actors[0].upscale.remote("big", big, settings, "builtin", {}, actors[1:]))
        large = time.perf_counter() - began
        helped = sum(stats["helped"] for stats in ray.get([actor.stats.remote() for actor in actors]))
    finally:
        for actor in actors:
            ray.kill(actor, no_restart=True)
    return {"workers": workers, "start": started, "batch": batch, "big": large, "out": out, "helped": helped}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--batch-side", type=int, default=256)
    parser.add_argument("--big-side", type=int, default=2048)
    parser.add_argument("--workers", default="1,2")
    args = parser.parse_args()
    counts = [int(part) for part in args.workers.split(",")]

    import os

    import ray

    os.environ.setdefault("UPREZ_CPU_BF16", "0")  # the same network on every worker and machine
    from engine.cluster.start import start_local

    start_local(num_cpus=max(counts), object_store_memory=512 * 2**20)
    images = [photo(args.batch_side)] * args.images
    big = photo(args.big_side)
    rows = [run(workers, images, big) for workers in counts]
    ray.shutdown()
    first = rows[0]
    size = f"{big.shape[1] * 2}x{big.shape[0] * 2}"
    print(f"| workers | start s | {args.images} x {args.batch_side} px batch s | ratio | one {size} s | ratio | "
          "tile batches on a helper | big bytes = 1 worker's |")
    print("|---:|---:|---:|---:|---:|---:|---:|---|")
    for row in rows:
        same = "yes" if np.array_equal(row["out"], first["out"]) else "NO"
        print(f"| {row['workers']} | {row['start']:.1f} | {row['batch']:.1f} | {row['batch'] / first['batch']:.2f} | "
              f"{row['big']:.1f} | {row['big'] / first['big']:.2f} | {row['helped']} | {same} |")


if __name__ == "__main__":
    main()
