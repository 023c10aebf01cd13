"""Real ICC profiles for the colour tests: Elle Stone's set from Krita's package, and Pillow's sRGB.

`ClayRGB-elle-V2-g22.icc` is Adobe-RGB compatible, `sRGB-elle-V2-g10.icc` is linear sRGB. Missing
profiles skip a test on a person's machine and fail it under CI=true (where the package must be installed).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

SEARCH = (Path("/usr/share/color/icc"), Path("/usr/share/krita"), Path("/usr/share"))


def profile_path(name: str) -> Path:
    for root in SEARCH:
        if root.is_dir():
            found = next(iter(sorted(root.rglob(name))), None)
            if found is not None:
                return found
    message = f"{name} not found under /usr/share; install Krita's package (apt-get install -y krita)"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def profile(name: str) -> bytes:
    return profile_path(name).read_bytes()


def clay() -> bytes:
    """Adobe-RGB compatible (ClayRGB, gamma 2.2)."""
    return profile("ClayRGB-elle-V2-g22.icc")


def linear_srgb() -> bytes:
    return profile("sRGB-elle-V2-g10.icc")


def transform(values: np.ndarray, source: bytes, target: bytes) -> np.ndarray:
    """Float RGB from one profile to another through LittleCMS (relative colorimetric), for references."""
    import imagecodecs

    return imagecodecs.cms_transform(np.ascontiguousarray(values, np.float32), source, target, colorspace="rgb",
                                     outcolorspace="rgb", intent=1).astype(np.float32)


def smooth_picture(width: int, height: int, seed: int = 0) -> np.ndarray:
    """A photo-like float RGB picture in [0.05, 0.95]: gradients, a few soft blobs, and fine texture."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack([x / width, y / height, 0.5 + 0.3 * np.sin(x / 5.0) * np.cos(y / 7.0)], axis=2)
    for _ in range(4):
        cx, cy, r = rng.uniform(0, width), rng.uniform(0, height), rng.uniform(4, 12)
        blob = np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * r * r))[:, :, None]
        base = base * (1 - blob) + blob * rng.uniform(0.1, 0.9, 3)
    base = base + rng.normal(0, 0.02, base.shape)
    return np.clip(base, 0.05, 0.95).astype(np.float32)
