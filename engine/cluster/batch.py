"""`uprez upscale DIR -o OUT --cluster ADDRESS|auto`: a folder's images spread over the cluster's model workers.

Ray's `ActorPool` hands each image to a free worker (a big image's tiles also go to the others, engine/cluster/
spread.py); results are written here, as they come, by the same writer as without a cluster. A worker that dies
is replaced and its image run again (engine/cluster/worker.py); Ctrl-C cancels what runs and writes nothing more.
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import ray
from ray.util import ActorPool

from engine.cluster.start import connect
from engine.cluster.worker import start_workers
from engine.imagefile import read_photo, write_image
from engine.photo import PhotoMeta
from engine.server.config import ServerConfig
from engine.settings import UpscaleSettings


def run_batch(jobs: Sequence[tuple[Path, Path]], settings: UpscaleSettings, *, address: str, workers: int | None,
              config: ServerConfig, options: dict[str, Any], frame: int | None = None, strip_metadata: bool = False,
              report: Callable[[str], None] | None = None) -> tuple[list[Path], list[Path]]:
    """Upscale every (source, target) on the cluster; returns (written targets, unreadable sources).

    `config` says how workers load the model (model, device, dtype, memory...); `options` are engine.api.upscale's
    keyword arguments beside the settings (mask, region_only, feather, max_memory)."""
    report = report or (lambda text: print(text, file=sys.stderr))
    plan = connect(address, workers)
    actors = start_workers(plan, config)
    pool = ActorPool(actors)
    metas: dict[str, tuple[Path, PhotoMeta]] = {}
    unreadable: list[Path] = []
    written: list[Path] = []

    def readable() -> list[tuple[str, np.ndarray]]:
        items = []
        for source, target in jobs:
            try:
                photo = read_photo(source, frame=frame)
            except Exception as exc:  # one bad file in a folder should not stop the batch
                unreadable.append(source)
                report(f"uprez: skipped: {exc}")
                continue
            job_id = uuid.uuid4().hex
            metas[job_id] = (target, photo.meta)
            items.append((job_id, photo.pixels))
        return items

    def submit(actor: Any, item: tuple[str, np.ndarray]) -> Any:
        job_id, pixels = item
        others = [other for other in actors if other is not actor]
        return actor.upscale.remote(job_id, pixels, settings, config.model, options, others)

    try:
        for job_id, result in pool.map_unordered(submit, readable()):
            target, meta = metas[job_id]
            write_image(target, result, meta.stripped() if strip_metadata else meta)
            written.append(target)
            report(f"wrote {target} ({result.shape[1]}x{result.shape[0]})")
    finally:  # also on Ctrl-C: the workers (and what they run) end with the batch
        for actor in actors:
            ray.kill(actor, no_restart=True)
    return written, unreadable


def run_from_args(args: Any, settings: UpscaleSettings, jobs: Sequence[tuple[Path, Path]],
                  mask: np.ndarray | None) -> int:
    """`uprez upscale ... --cluster`: the command line's checked arguments to `run_batch`, and its exit code."""
    from engine.cli import EXIT_USAGE, _batch_summary, _names
    from engine.errors import InvalidInput
    from engine.sr.find import sr_model_path

    if sr_model_path(args.model) is not None:
        raise InvalidInput("--cluster runs flow models (FLUX, SD3, Qwen-Image, Z-Image, the built-in model); "
                           f"{args.model} is an upscale model: run it without --cluster")
    config = ServerConfig(model=args.model, base=args.base, quantize=args.quantize, device=args.device,
                          dtype=args.dtype, offload=args.offload, memory=args.memory,
                          max_memory=int(args.max_memory * 2**30) if args.max_memory is not None else None)
    options = {"mask": mask, "region_only": args.region_only, "feather": args.feather,
               "max_memory": config.max_memory}
    written, unreadable = run_batch(jobs, settings, address=args.cluster, workers=args.cluster_workers,
                                    config=config, options=options, frame=args.frame,
                                    strip_metadata=args.strip_metadata)
    if unreadable:
        print(f"uprez: {len(unreadable)} of {len(jobs)} images could not be read ({_names(unreadable)}); "
              f"{_batch_summary(list(jobs), written)}", file=sys.stderr)
        return EXIT_USAGE
    return 0
