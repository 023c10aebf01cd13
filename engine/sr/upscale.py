"""A standalone SR job: an upscale model instead of the flow, with the flow path's alpha, depth and masks."""

from __future__ import annotations

import numpy as np
from PIL import Image

from engine.errors import InvalidInput
from engine.pixels import conventional_resize, feather_mask, from_image, mask_box, mask_resize, read_mask, to_image
from engine.progress import CancelToken, ProgressCallback, ProgressEvent
from engine.sr.load import SRModel
from engine.sr.resize import sr_resize
from engine.stages import check_scale, output_size, round_half_up


def _progress(model: SRModel, callback: ProgressCallback | None):
    """(pass, passes, tile, tiles) -> one ProgressEvent per tile; each pass weighted by its pixel count."""
    if callback is None:
        return None

    def on_pass(index: int, passes: int, done: int, total: int) -> None:
        weights = [model.scale ** (2 * i) for i in range(passes)]
        finished = sum(weights[: index - 1]) + weights[index - 1] * done / total
        fraction = 1.0 if index == passes and done == total else finished / sum(weights)
        callback(ProgressEvent(index, passes, done, total, fraction, 0.0))

    return on_pass


def upscale_sr(
    image: Image.Image | np.ndarray,
    model: SRModel,
    *,
    scale: float = 2.0,
    mask: Image.Image | np.ndarray | None = None,
    region_only: bool = False,
    feather: float = 0.0,
    tile_size: int | None = None,
    on_progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> Image.Image | np.ndarray:
    """Upscale by `scale` with an SR model; returns the caller's format (8/16-bit or float, alpha kept).

    Alpha is resized with Lanczos and re-attached. With a soft `mask` only its bounding box plus
    `engine.api.MASK_CONTEXT` pixels goes through the model, and the result is blended with the mask's upscale,
    so where the mask is 0 the output equals the Lanczos upscale exactly (as engine.api.upscale does).
    """
    from engine.api import MASK_CONTEXT, MAX_FEATHER

    try:
        scale = check_scale(scale)
    except ValueError as exc:
        raise InvalidInput(str(exc)) from None
    if isinstance(feather, bool) or not isinstance(feather, (int, float)) or not 0.0 <= feather <= MAX_FEATHER:
        raise InvalidInput(f"feather must be a radius in pixels from 0 to {MAX_FEATHER}, got {feather!r}")
    pixels = from_image(image)
    width, height = pixels.size
    out_size = output_size(width, height, scale)
    mask_in = None if mask is None else feather_mask(read_mask(mask, pixels.size), feather)
    weight = None if mask_in is None else mask_resize(mask_in, out_size)  # cannot overshoot, as the flow path's
    alpha = None if pixels.alpha is None else conventional_resize(pixels.alpha, out_size)
    if region_only:
        if weight is None:
            raise InvalidInput("region_only needs a mask: the region is what the mask selects")
        alpha = weight if alpha is None else alpha * weight
    box = None if mask_in is None else mask_box(mask_in, MASK_CONTEXT)
    if mask_in is not None and (box is None or not weight.any()):
        return to_image(conventional_resize(pixels.rgb, out_size), alpha, pixels)
    top, left, bottom, right = box or (0, 0, height, width)
    out_box = [round_half_up(side * scale) for side in (top, left, bottom, right)]
    rgb = sr_resize(model, pixels.rgb[top:bottom, left:right], (out_box[3] - out_box[1], out_box[2] - out_box[0]),
                    tile=tile_size, on_pass=_progress(model, on_progress), cancel=cancel)
    if weight is not None:
        conventional = conventional_resize(pixels.rgb, out_size)
        rows, cols = slice(out_box[0], out_box[2]), slice(out_box[1], out_box[3])
        box_weight = weight[rows, cols, None]
        conventional[rows, cols] = box_weight * rgb + (1.0 - box_weight) * conventional[rows, cols]
        rgb = conventional
    return to_image(rgb, alpha, pixels)
