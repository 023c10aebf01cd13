"""Image comparison for the tests: one PSNR."""

from __future__ import annotations

import math

import numpy as np

_PEAKS = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}


def psnr(a: np.ndarray, b: np.ndarray, peak: float | None = None) -> float:
    """PSNR in dB of two images of one shape; inf when they are equal.

    `peak` is the largest value a sample can take: by default 255 for uint8, 65535 for uint16 and 1 for floats
    (taken from `a`). Pass it when `a` holds 8-bit values in another type.
    """
    x, y = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if x.shape != y.shape:
        raise ValueError(f"images differ in shape: {x.shape} vs {y.shape}")
    peak = _PEAKS.get(np.asarray(a).dtype, 1.0) if peak is None else peak
    mse = float(np.mean((x - y) ** 2))
    return math.inf if mse == 0.0 else 10.0 * math.log10(peak**2 / mse)
