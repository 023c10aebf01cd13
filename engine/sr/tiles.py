"""An SR model over an image in overlapping tiles, fused with weights that sum to one (engine.tile_grid's maths).

Each tile is cut from the input with `overlap` pixels shared with its neighbours. The model's output of a tile
is wrong near the tile's cut edges (the network sees no pixels beyond them), so `margin` input pixels of its
output are dropped on every cut side, and the rest of the shared band is cross-faded with engine.tile_grid's
raised-cosine weights. A network whose receptive field reaches less than `margin` input pixels gives the
same result as an untiled run, up to float rounding.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import torch

from engine.errors import DeviceError
from engine.memory import available_bytes
from engine.progress import CancelToken
from engine.sr.load import SRModel
from engine.tile_grid import Window, blend_weights, fuse_tiles, scaled, tile_windows

DEFAULT_OVERLAP = 32  # input pixels neighbouring tiles share
MIN_TILE = 64
MAX_TILE = 1024
# Rough live bytes per input pixel per unit of scale² and of element size: the widest SR networks keep a few
# dozen 64-channel feature maps at the input size plus the upsampled tail; measured peaks of ESRGAN-64nf and
# SwinIR-M at fp32 on CPU fall under it.
_LIVE_FEATURES = 64 * 24

TileCallback = Callable[[int, int], None]  # (tiles done, tiles in all)


def auto_tile(model: SRModel, free: int | None = None) -> int:
    """Largest tile side (input pixels) whose activations take at most half the free memory, from 64 to 1024."""
    free = available_bytes(model.device) if free is None else free
    if free is None:
        return 512
    element = torch.finfo(model.dtype).bits // 8
    per_pixel = element * _LIVE_FEATURES * (1 + model.scale**2 / 4)
    side = int(math.sqrt(free / 2 / per_pixel))
    return max(MIN_TILE, min(MAX_TILE, side // 16 * 16))


def _cropped(window: Window, margin: int, height: int, width: int) -> Window:
    """The part of a tile kept after dropping `margin` pixels on the sides that are cut (not the image border)."""
    top = window.top + (margin if window.top > 0 else 0)
    left = window.left + (margin if window.left > 0 else 0)
    bottom = window.top + window.height - (margin if window.top + window.height < height else 0)
    right = window.left + window.width - (margin if window.left + window.width < width else 0)
    return Window(top, left, bottom - top, right - left)


def run_tiled(model: SRModel, x: torch.Tensor, *, tile: int, overlap: int = DEFAULT_OVERLAP,
              on_tile: TileCallback | None = None, cancel: CancelToken | None = None) -> torch.Tensor:
    """(1, C, H, W) float32 in [0, 1] on the CPU -> (1, C, H·s, W·s) float32 on the CPU, `tile` pixels at a time."""
    _, channels, height, width = x.shape
    s = model.scale
    overlap = min(overlap, tile // 2 - 1)
    margin = overlap // 4
    windows = tile_windows(height, width, tile, overlap)
    kept = [_cropped(w, margin, height, width) for w in windows]
    out_windows = [scaled(k, s) for k in kept]
    weights = blend_weights(height * s, width * s, out_windows, (overlap - 2 * margin) * s)
    out = torch.zeros(1, channels, height * s, width * s)

    def outputs() -> Iterator[torch.Tensor]:
        for index, (window, keep) in enumerate(zip(windows, kept, strict=True)):
            if cancel is not None:
                cancel.raise_if_cancelled()
            rows, cols = window.slices
            y = model(x[:, :, rows, cols].to(model.device, model.dtype)).float().cpu()
            top, left = (keep.top - window.top) * s, (keep.left - window.left) * s
            yield y[:, :, top : top + keep.height * s, left : left + keep.width * s]
            if on_tile is not None:
                on_tile(index + 1, len(windows))

    return fuse_tiles(outputs(), out_windows, weights, out)


def run_with_retry(model: SRModel, x: torch.Tensor, *, tile: int | None = None, overlap: int = DEFAULT_OVERLAP,
                   on_tile: TileCallback | None = None, cancel: CancelToken | None = None) -> torch.Tensor:
    """`run_tiled` with the tile from free memory (or `tile`), halved and started again on out-of-memory."""
    side = tile or auto_tile(model)
    while True:
        try:
            return run_tiled(model, x, tile=side, overlap=overlap, on_tile=on_tile, cancel=cancel)
        except torch.OutOfMemoryError as exc:
            if model.device.type == "cuda":
                torch.cuda.empty_cache()
            if side // 2 < MIN_TILE:
                raise DeviceError(f"{model.device} ran out of memory running {model.name} even on {side} px tiles; "
                                  "use a smaller scale or region, or --device cpu") from exc
            side //= 2
