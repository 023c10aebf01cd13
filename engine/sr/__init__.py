"""Pixel super-resolution models (ESRGAN, Compact, SwinIR, SPAN, DAT, OmniSR, ...) loaded with spandrel.

`load.py` reads a checkpoint, `tiles.py` runs it in blended tiles, `resize.py` reaches any size with it,
`upscale.py` is the standalone job (alpha, depth, masks), `find.py` and `catalog.py` serve the model manager.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

    import numpy as np

    from engine.backends.base import FlowBackend
    from engine.progress import CancelToken
    from engine.settings import UpscaleSettings

# With an SR model as the first stage's upsample, presets start the refine from this share of their strength:
# the SR output already carries the high band that Lanczos leaves for the noise to re-invent. Measured with
# bench/sr_refine.py (bench/README.md): on the built-in model the share barely matters (0.5-1.0 within 0.14 dB;
# it is conditioned on the upsample, so noise does not decide what survives) while any refine overshoots the
# original's fine detail on an SR start, so the big models keep the low-strength refine the papers use (README
# "Using your upscale models"). Models that start from pure noise by design (strength 1) keep it.
SR_STRENGTH_FACTOR = 0.7


def first_stage(settings: UpscaleSettings, backend: FlowBackend, cancel: CancelToken | None = None
                ) -> tuple[Callable[[np.ndarray, tuple[int, int]], np.ndarray] | None, UpscaleSettings]:
    """The flow path's first-stage upsample for `settings.upsampler` (None for Lanczos), and the settings with
    the preset's strength lowered for it where the job left strength to the preset."""
    from engine.sr.find import resolve_upsampler
    from engine.sr.load import get_sr_model
    from engine.sr.resize import sr_upsampler

    path = resolve_upsampler(settings.upsampler)
    if path is None:
        return None, settings
    model = get_sr_model(path, device=str(backend.device))
    if settings.strength is None:
        preset = backend.presets.get(settings.preset or "balanced", {})
        strength = preset.get("strength", backend.default_strength)
        if strength < 1.0:
            settings = replace(settings, strength=round(strength * SR_STRENGTH_FACTOR, 4))
    return sr_upsampler(model, cancel=cancel), settings
