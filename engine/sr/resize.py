"""Any output size from an SR model: its own factor once or twice, then a Lanczos resize to the exact size."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from engine.pixels import conventional_resize
from engine.progress import CancelToken
from engine.sr.load import SRModel
from engine.sr.tiles import DEFAULT_OVERLAP, run_with_retry

PassCallback = Callable[[int, int, int, int], None]  # (pass, passes, tiles done, tiles in pass)


def passes_for(native: int, factor: float) -> int:
    """How often to apply a model of factor `native` to grow by `factor`: once if that reaches it (or the
    model is 1x), else twice (a 4x model twice for 8x, a 2x model twice for 3x or 4x), Lanczos doing the rest.
    Never a third time: errors compound with each pass and the cost grows with the square of the size."""
    return 1 if native <= 1 or native >= factor - 1e-9 else 2


def sr_resize(model: SRModel, rgb: np.ndarray, size: tuple[int, int], *, tile: int | None = None,
              overlap: int = DEFAULT_OVERLAP, on_pass: PassCallback | None = None,
              cancel: CancelToken | None = None) -> np.ndarray:
    """(H, W, 3) float colour in [0, 1] -> (size[1], size[0], 3): the model, then Lanczos to `size`."""
    height, width = rgb.shape[:2]
    passes = passes_for(model.scale, max(size[0] / width, size[1] / height))
    x = torch.from_numpy(np.ascontiguousarray(rgb, dtype=np.float32)).permute(2, 0, 1)[None]
    grey = model.descriptor.input_channels == 1
    if tile is None and model.descriptor.tiling.name == "INTERNAL":
        # The model tiles itself and needs the whole image: one tile, large enough for a second pass too.
        tile = max(height, width) * model.scale
    for index in range(passes):
        tile_callback = None if on_pass is None else (lambda done, total, i=index: on_pass(i + 1, passes, done, total))
        x_in = x.mean(dim=1, keepdim=True) if grey else x
        x = run_with_retry(model, x_in, tile=tile, overlap=overlap, on_tile=tile_callback, cancel=cancel)
        if grey:
            x = x.expand(-1, 3, -1, -1)
    out = x[0].permute(1, 2, 0).clamp_(0.0, 1.0).numpy()
    return out if (out.shape[1], out.shape[0]) == tuple(size) else conventional_resize(out, size)


def sr_upsampler(model: SRModel, *, tile: int | None = None,
                 cancel: CancelToken | None = None) -> Callable[[np.ndarray, tuple[int, int]], np.ndarray]:
    """A drop-in for `conventional_resize(rgb, size)` that runs the SR model first (the flow path's upsample)."""

    def upsample(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        return sr_resize(model, rgb, size, tile=tile, cancel=cancel)

    return upsample
