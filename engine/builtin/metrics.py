"""Measures of JPEG damage in an upscale: the block-grid ratio (issue 15), a pure function of one image."""

from __future__ import annotations

import numpy as np

JPEG_BLOCK = 8  # pixels of the low-res input per JPEG block


def luma(image: np.ndarray) -> np.ndarray:
    """BT.601 luma of float RGB (H, W, 3) in [0, 1] or uint8, in 8-bit levels."""
    values = np.asarray(image, dtype=np.float64)
    if np.asarray(image).dtype == np.uint8:
        values = values / 255.0
    return values[:, :, :3] @ np.array([0.299, 0.587, 0.114]) * 255.0


def block_grid_ratio(image: np.ndarray, factor: int, block: int = JPEG_BLOCK) -> float:
    """Mean absolute luma step across the input's JPEG block borders (every block * factor output pixels,
    both directions) over the mean step everywhere else: about 1.0 for a photo without a block grid,
    above it where the 8x8 grid shows (or was sharpened).

    "Everywhere else" is every other step of the same phase modulo `factor` (between input pixels, as the
    borders are): an x2 upscaler's own two-pixel pattern (PIL's bicubic alternates its steps by about 20 %)
    would otherwise read as a grid on a clean input."""
    y = luma(image)
    period = block * factor
    across_columns = np.abs(np.diff(y, axis=1))  # step between column c and c + 1 sits at index c
    across_rows = np.abs(np.diff(y, axis=0))
    position_c, position_r = np.arange(across_columns.shape[1]) + 1, np.arange(across_rows.shape[0]) + 1
    on_columns, on_rows = position_c % period == 0, position_r % period == 0
    if not on_columns.any() and not on_rows.any():
        raise ValueError(f"an image of {y.shape[1]}x{y.shape[0]} has no {period}-pixel block border")
    same_columns = (position_c % factor == 0) & ~on_columns
    same_rows = (position_r % factor == 0) & ~on_rows
    border = np.concatenate([across_columns[:, on_columns].ravel(), across_rows[on_rows].ravel()])
    inside = np.concatenate([across_columns[:, same_columns].ravel(), across_rows[same_rows].ravel()])
    return float(border.mean() / max(inside.mean(), 1e-9))
