"""`upscale()`: the one function the CLI, the server and scripts call."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np
import torch
from PIL import Image

from engine import colour
from engine.backends.base import FlowBackend
from engine.backends.cache import ModelCache
from engine.errors import DeviceError, InvalidInput
from engine.memory import available_bytes, estimate_peak_bytes, format_bytes
from engine.pipeline import plan_work, run_stages
from engine.pixels import (
    Pixels,
    conventional_resize,
    feather_mask,
    from_image,
    mask_box,
    mask_resize,
    read_mask,
    to_image,
)
from engine.progress import CancelToken, ProgressCallback
from engine.recipe import halved, resolve, tiles_for
from engine.settings import ModelSpec, UpscaleSettings
from engine.stages import output_size, round_half_up
from engine.work import Work, cancel_between_layers
from plugin.uprez_client.protocol import MASK_CONTEXT

# Scripts' loaded model (`upscale(img, model=...)`, `get_backend`); the server's runner keeps its own
# (engine.server.runner) and the command line loads once per run.
_scripts_models = ModelCache()


def get_backend(spec: ModelSpec) -> FlowBackend:
    """Load a model for a script, keeping the last one loaded: switching models frees the previous one first."""
    return _scripts_models.get(spec)


def release_backend() -> bool:
    """Forget the script's loaded model; True if one was loaded (the next get_backend loads it again)."""
    return _scripts_models.release()


MAX_FEATHER = 256.0


def smaller_tiles(backend: FlowBackend, settings: UpscaleSettings) -> UpscaleSettings:
    """The same job with `engine.recipe.halved` tiles, as settings: what the server's out-of-memory retry runs."""
    tiles = halved(tiles_for(settings, backend))
    return replace(settings, tile_size=tiles.size, tile_overlap=tiles.overlap, tile_batch=tiles.batch)


def _check_fits(backend: FlowBackend, size: tuple[int, int], max_memory: int | None, tile: int) -> None:
    need = estimate_peak_bytes(size[0] * size[1], backend.vae_width, backend.dtype, tile_pixels=tile * tile)
    have = max_memory if max_memory is not None else available_bytes(backend.device)
    if have is not None and need > have:
        raise DeviceError(
            f"a {size[0]}x{size[1]} output needs about {format_bytes(need)} on {backend.device}, "
            f"but only {format_bytes(have)} is available; use a smaller scale or a smaller region, "
            "or a device with more memory"
        )


def upscale(
    image: Image.Image | np.ndarray,
    settings: UpscaleSettings | None = None,
    *,
    backend: FlowBackend | None = None,
    model: ModelSpec | str | None = None,
    on_progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
    max_memory: int | None = None,
    mask: Image.Image | np.ndarray | None = None,
    region_only: bool = False,
    preview_every: int = 0,
    feather: float = 0.0,
    icc_profile: bytes | None = None,
    **overrides: Any,
) -> Image.Image | np.ndarray:
    """Upscale a PIL image or (H, W[, C]) array by progressive flow matching; returns the caller's format.

    `overrides` are `UpscaleSettings` fields (`upscale(img, scale=4, seed=1)`); with no `backend` or `model`
    the built-in model runs. Colour goes through the model; alpha is resized conventionally and re-attached.
    Outputs larger than a tile (`tile_size`) are denoised, encoded and decoded in blended tiles.

    With a soft `mask` (same size as the image, 0 = keep) the model's pixels are blended in with the
    upscaled mask, so where it is 0 the result equals the conventional upscale exactly. Only the mask's
    bounding box plus `MASK_CONTEXT` pixels goes to the model, and inside it only the tiles near the mask.
    `feather` blurs the mask first (Gaussian sigma in input pixels); `region_only` returns RGBA whose alpha
    is that mask. `preview_every` = N puts a small preview image on every Nth progress event. Progress
    comes in work units (tiles of every model and VAE call, the passes, the composite), at most about ten
    events a second, the last at exactly 1.0. Raises `Cancelled` when `cancel` fires (checked between
    tiles): the caller gets nothing, and the job's tensors are released.

    `icc_profile` (default: a PIL image's own `info["icc_profile"]`) says what colour space the pixels are
    in; the model and the resize work in sRGB and the result comes back in that profile (engine/colour.py).
    """
    settings = replace(settings or UpscaleSettings(), **overrides) if overrides else settings or UpscaleSettings()
    if isinstance(feather, bool) or not isinstance(feather, (int, float)) or not 0.0 <= feather <= MAX_FEATHER:
        raise InvalidInput(f"feather must be a radius in pixels from 0 to {MAX_FEATHER}, got {feather!r}")
    pixels = from_image(image)
    width, height = pixels.size
    out_size = output_size(width, height, settings.scale)
    if icc_profile is None and isinstance(image, Image.Image):
        icc_profile = image.info.get("icc_profile")
    pixels, finish = _colour_managed(pixels, icc_profile, out_size)
    mask_in = None if mask is None else feather_mask(read_mask(mask, pixels.size), feather)
    weight = None if mask_in is None else mask_resize(mask_in, out_size)
    alpha = None if pixels.alpha is None else conventional_resize(pixels.alpha, out_size)
    if region_only:
        if weight is None:
            raise InvalidInput("region_only needs a mask: the region is what the mask selects")
        alpha = weight if alpha is None else alpha * weight
    box = None if mask_in is None else mask_box(mask_in, MASK_CONTEXT)
    if settings.strength == 0.0 or (mask_in is not None and (box is None or not weight.any())):
        # No noise (or nothing selected) means no change: the model would only add a VAE round trip.
        return to_image(finish(conventional_resize(pixels.rgb, out_size)), alpha, pixels)

    if backend is None:
        backend = get_backend(ModelSpec(model) if isinstance(model, str) else model or ModelSpec())
    if settings.loras or getattr(backend, "lora_slots", None):  # a job without LoRAs takes the last one's off
        from engine.lora.apply import apply_loras
        from engine.lora.spec import parse_loras

        apply_loras(backend, parse_loras(settings.loras))
    upsample = None
    if settings.upsampler is not None:
        from engine.sr import first_stage

        upsample, settings = first_stage(settings, backend, cancel)
    top, left, bottom, right = box or (0, 0, height, width)
    out_box = [round_half_up(side * settings.scale) for side in (top, left, bottom, right)]
    recipe = resolve(settings, backend, size=(right - left, bottom - top),
                     final_size=(out_box[3] - out_box[1], out_box[2] - out_box[0]), region_only=region_only,
                     feather=feather, preview_every=preview_every)
    _check_fits(backend, out_size, max_memory, recipe.grid.tile * backend.vae_scale)
    work = Work(plan_work(recipe, backend=backend, input_hw=(bottom - top, right - left)), len(recipe.stages),
                on_progress, cancel)
    cond = backend.encode_prompt(recipe.prompt, recipe.negative_prompt, cfg_scale=recipe.cfg_scale,
                                 guidance=recipe.distilled_guidance)
    try:
        with cancel_between_layers(cancel):  # a cancel stops even a long tile's model call (engine.work)
            rgb = run_stages(pixels.rgb[top:bottom, left:right], recipe, backend=backend, cond=cond,
                             mask=None if mask_in is None else mask_in[top:bottom, left:right],
                             cancel=cancel, work=work, upsample=upsample)
    except torch.OutOfMemoryError as exc:
        raise DeviceError(
            f"{backend.device} ran out of memory at {out_size[0]}x{out_size[1]}; use a smaller scale, region "
            "or tile size, --memory group-offload, a quantized model file, or a device with more memory"
        ) from exc
    finally:
        if backend.device.type == "cuda":
            torch.cuda.empty_cache()
    work.begin("finish")
    if weight is not None:
        # Pixel-space composite: outside the mask nothing takes the VAE round trip.
        conventional = conventional_resize(pixels.rgb, out_size)
        rows, cols = slice(out_box[0], out_box[2]), slice(out_box[1], out_box[3])
        box_weight = weight[rows, cols, None]
        conventional[rows, cols] = box_weight * rgb + (1.0 - box_weight) * conventional[rows, cols]
        rgb = conventional
    result = to_image(finish(rgb), alpha, pixels)
    work.unit()
    work.finish()
    return result


def _colour_managed(pixels: Pixels, icc: bytes | None, out_size: tuple[int, int],
                    ) -> tuple[Pixels, Callable[[np.ndarray], np.ndarray]]:
    """The pixels in sRGB for the model, and the function that takes its result back into `icc`."""
    if not colour.usable(icc, pixels.grey):
        return pixels, lambda rgb: rgb
    assert icc is not None
    working, excess = colour.split_gamut(colour.to_working(pixels.rgb, icc, pixels.grey))

    def finish(rgb: np.ndarray) -> np.ndarray:
        if excess is not None:  # colour outside sRGB: carried by the conventional resize (engine/colour.py)
            rgb = rgb + conventional_resize(excess, out_size, clip=False)
        return colour.from_working(rgb, icc, pixels.grey)

    return replace(pixels, rgb=working), finish
