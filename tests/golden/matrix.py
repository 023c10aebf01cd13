"""A fixed matrix of jobs on the tiny models whose output bytes are recorded (issue 17).

Refactors must leave every output identical: `record.py` writes `recorded.npz` once, on purpose, and
`test_recorded_outputs.py` runs the same jobs and compares. Each job is small (a 40x48 crop, x2) so the
whole matrix runs in about a minute on one thread.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

# Recorded and compared without the built-in network's bf16 convolutions, which only some CPUs have.
os.environ.setdefault("UPREZ_CPU_BF16", "0")

SAMPLE = Path(__file__).resolve().parents[2] / "engine" / "data" / "sample.jpg"
FAMILIES = ("flux-dev", "flux-schnell", "sd3", "qwen-image", "z-image", "flux2-klein", "chroma")
TILED = {"tile_size": 64, "tile_overlap": 16}


@dataclass(frozen=True)
class Job:
    name: str
    model: str  # a tiny family, or "builtin"
    settings: dict[str, Any] = field(default_factory=dict)
    kwargs: dict[str, Any] = field(default_factory=dict)  # upscale()'s keyword arguments beside the settings
    image: str = "rgb"  # rgb, rgba, rgb16
    mask: bool = False
    upsampler: bool = False  # the tiny ESRGAN x4 as the first stage's upsample


def _jobs() -> list[Job]:
    jobs = [Job(f"{family}-default", family) for family in FAMILIES]
    jobs += [
        Job("flux-dev-tiled", "flux-dev", TILED),
        Job("flux-dev-tiled-batch2", "flux-dev", {**TILED, "tile_batch": 2}),
        Job("flux-dev-scale3", "flux-dev", {"scale": 3.0}),
        Job("flux-dev-scale1.5", "flux-dev", {"scale": 1.5}),
        Job("flux-dev-steps-strength", "flux-dev", {"steps": 6, "strength": 0.6, "seed": 7}),
        Job("flux-dev-prompt-guidance", "flux-dev", {"prompt": "a cat, sharp focus", "guidance": 2.0}),
        Job("flux-dev-faithful", "flux-dev", {"preset": "faithful"}),
        Job("flux-dev-creative", "flux-dev", {"preset": "creative"}),
        Job("flux-dev-skip-residual", "flux-dev", {"skip_residual": 0.5}),
        Job("flux-dev-no-alignment", "flux-dev", {"direction_alignment": 0.0}),
        Job("flux-dev-acceleration", "flux-dev", {"acceleration_alignment": 0.5}),
        Job("flux-dev-no-match-statistics", "flux-dev", {"match_statistics": False}),
        Job("flux-dev-scale-aware", "flux-dev", {"scale_aware": True, "scale": 3.0}),
        Job("flux-dev-stochastic", "flux-dev", {"stochastic": 0.3}),
        Job("flux-dev-dilated-views", "flux-dev", {**TILED, "dilated_views": 0.5}),
        Job("flux-dev-all-guidance-tiled", "flux-dev",
            {**TILED, "skip_residual": 0.4, "acceleration_alignment": 0.3, "stochastic": 0.2, "dilated_views": 0.3,
             "scale_aware": True}),
        Job("flux-dev-mask", "flux-dev", mask=True),
        Job("flux-dev-mask-tiled-feather", "flux-dev", TILED, {"feather": 2.0}, mask=True),
        Job("flux-dev-region-only", "flux-dev", kwargs={"region_only": True}, mask=True),
        Job("flux-dev-rgba", "flux-dev", image="rgba"),
        Job("flux-dev-rgb16", "flux-dev", image="rgb16"),
        Job("flux-dev-upsampler", "flux-dev", upsampler=True),
        Job("sd3-cfg-negative", "sd3", {"cfg_scale": 3.0, "prompt": "a photo", "negative_prompt": "low quality"}),
        Job("sd3-tiled-creative", "sd3", {**TILED, "preset": "creative"}),
        Job("qwen-image-tiled", "qwen-image", TILED),
        Job("z-image-mask", "z-image", mask=True),
        Job("flux2-klein-tiled", "flux2-klein", TILED),
        Job("chroma-cfg", "chroma", {"cfg_scale": 2.0, "negative_prompt": "blurry"}),
        Job("builtin-default", "builtin"),
        Job("builtin-x4", "builtin", {"scale": 4.0}),
        Job("builtin-creative", "builtin", {"preset": "creative"}),
        Job("builtin-faithful-steps", "builtin", {"preset": "faithful", "steps": 3}),
        Job("builtin-tiled", "builtin", TILED),
        Job("builtin-mask-region", "builtin", kwargs={"region_only": True, "feather": 1.5}, mask=True),
        Job("builtin-rgba16", "builtin", image="rgba16"),
    ]
    return jobs


JOBS = _jobs()


def _image(kind: str) -> np.ndarray:
    with Image.open(SAMPLE) as opened:
        rgb = np.asarray(opened.convert("RGB").resize((40, 48), Image.Resampling.LANCZOS))
    alpha = np.linspace(0, 255, 40 * 48).reshape(48, 40, 1).astype(np.uint8)
    if kind == "rgb":
        return rgb
    if kind == "rgba":
        return np.concatenate([rgb, alpha], axis=2)
    wide = rgb.astype(np.uint16) * 257 + np.arange(40, dtype=np.uint16)[None, :, None]
    if kind == "rgb16":
        return wide
    return np.concatenate([wide, alpha.astype(np.uint16) * 257], axis=2)


def _mask() -> np.ndarray:
    rows, cols = np.mgrid[0:48, 0:40]
    return np.clip(1.5 - np.hypot(rows - 30, cols - 12) / 10.0, 0.0, 1.0).astype(np.float32)


def run_job(job: Job, backend_for: Callable[[str], Any], upsampler_path: str) -> np.ndarray:
    """The job's output as an array, through `engine.api.upscale` as the CLI and the server call it."""
    from engine.api import upscale
    from engine.settings import UpscaleSettings

    settings = dict(job.settings)
    if job.upsampler:
        settings["upsampler"] = upsampler_path
    result = upscale(_image(job.image), UpscaleSettings(**settings), backend=backend_for(job.model),
                     mask=_mask() if job.mask else None, **job.kwargs)
    return np.ascontiguousarray(np.asarray(result))


def cpu_capability() -> str:
    import torch

    return f"torch {torch.__version__} {torch.backends.cpu.get_cpu_capability()}"
