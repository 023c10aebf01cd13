"""Region maths shared by the bridges: which part of the image a selection sends, and where its result lands.

Sizes follow the engine: a side of n pixels becomes round_half_up(n * scale). A selection's crop is grown
by a context margin (the model needs to see around the selection), clipped to the image, and its edges
are nudged outward so they land on whole pixels of the scaled image, where the factor allows it; then
the upscaled crop sits exactly on the scaled image's pixel grid.
"""

from __future__ import annotations

from typing import NamedTuple

from .protocol import MASK_CONTEXT as CONTEXT_PX  # what the engine itself keeps around a mask
from .protocol import round_half_up

SNAP_SEARCH_PX = 16  # how far an edge may move outward to land on the scaled grid
SNAP_TOLERANCE = 1e-6


def scaled(length: float, scale: float) -> int:
    """round_half_up(length * scale): the engine's rule for output sizes and positions."""
    return round_half_up(length * scale)


def scaled_size(width: int, height: int, scale: float) -> tuple[int, int]:
    return scaled(width, scale), scaled(height, scale)


class Region(NamedTuple):
    """A crop of the image (x, y, width, height) and where its upscaled pixels go in the scaled image."""

    x: int
    y: int
    width: int
    height: int
    out_x: int
    out_y: int
    out_width: int
    out_height: int


def _on_grid(edge: int, scale: float) -> bool:
    product = edge * scale
    return abs(product - round(product)) < SNAP_TOLERANCE


def _snap_low(edge: int, limit: int, scale: float) -> int:
    for candidate in range(edge, max(limit, edge - SNAP_SEARCH_PX) - 1, -1):
        if _on_grid(candidate, scale):
            return candidate
    return edge


def _snap_high(edge: int, limit: int, scale: float) -> int:
    for candidate in range(edge, min(limit, edge + SNAP_SEARCH_PX) + 1):
        if _on_grid(candidate, scale):
            return candidate
    return edge


def selection_region(bbox: tuple[int, int, int, int], bounds: tuple[int, int, int, int], scale: float,
                     context: int = CONTEXT_PX) -> Region | None:
    """The crop to send for a selection and where its result goes; None when they do not overlap.

    `bbox` and `bounds` are (x, y, width, height): the selection's bounding box and the image (or layer)
    it is cut from, in the same coordinates; `bounds` may start anywhere (a layer's offset).
    """
    bx, by, bw, bh = bbox
    ix, iy, iw, ih = bounds
    if bw <= 0 or bh <= 0 or iw <= 0 or ih <= 0:
        return None
    left, top = max(bx, ix), max(by, iy)
    right, bottom = min(bx + bw, ix + iw), min(by + bh, iy + ih)
    if left >= right or top >= bottom:
        return None
    left = _snap_low(max(ix, left - context), ix, scale)
    top = _snap_low(max(iy, top - context), iy, scale)
    right = _snap_high(min(ix + iw, right + context), ix + iw, scale)
    bottom = _snap_high(min(iy + ih, bottom + context), iy + ih, scale)
    width, height = right - left, bottom - top
    return Region(left, top, width, height, scaled(left, scale), scaled(top, scale),
                  scaled(width, scale), scaled(height, scale))

