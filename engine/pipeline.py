"""Progressive flow upscale (DESIGN §The algorithm 1-3, 8): upsample, re-noise, flow-denoise, per stage."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from engine.backends.base import Conditioning, FlowBackend
from engine.pixels import conventional_resize, crop_to, from_model_tensor, pad_to_multiple, to_model_tensor
from engine.progress import CancelToken, ProgressCallback, ProgressEvent
from engine.sampler import euler, predicted_x0, renoise
from engine.schedule import remaining_sigmas
from engine.stages import stage_sizes
from engine.tiled import TileGrid, tiled_decode, tiled_encode, tiled_velocity
from engine.tiling import blend_weights, dilate, windows_touching


@dataclass(frozen=True)
class Stage:
    """One progressive stage: its output size, padded latent size, and the sigmas it integrates."""

    size: tuple[int, int]  # (width, height) in pixels after this stage
    latent_hw: tuple[int, int]
    sigmas: tuple[float, ...]

    @property
    def steps(self) -> int:
        return len(self.sigmas) - 1


def plan(width: int, height: int, scale: float, strength: float, steps: int, backend: FlowBackend,
         final_size: tuple[int, int] | None = None) -> list[Stage]:
    """Every stage of an upscale, computed before any model call so progress can be weighted by cost."""
    multiple = backend.latent_multiple
    stages = []
    for w, h in stage_sizes(width, height, scale, final_size):
        padded_w, padded_h = -(-w // multiple) * multiple, -(-h // multiple) * multiple
        latent_hw = (padded_h // backend.vae_scale, padded_w // backend.vae_scale)
        # mu stays at the native token count: extrapolating it with the output size makes the shift
        # explode (FLUX: shift ≈ 25 at 2K), which wipes out the structure we came to keep.
        sigmas = remaining_sigmas(steps, strength, backend.shift_rule, backend.native_tokens)
        stages.append(Stage((w, h), latent_hw, tuple(sigmas)))
    return stages


class _Progress:
    """Turns (stage, step) into one overall fraction, each step weighted by its stage's token count."""

    def __init__(self, stages: list[Stage], callback: ProgressCallback | None) -> None:
        self.stages = stages
        self.callback = callback
        self.weights = [s.latent_hw[0] * s.latent_hw[1] for s in stages]
        self.total = sum(w * s.steps for w, s in zip(self.weights, stages, strict=True))
        self.done = 0

    def step(self, stage_index: int, step_index: int, sigma: float, preview: np.ndarray | None = None) -> None:
        self.done += self.weights[stage_index]
        if self.callback is None:
            return
        stage = self.stages[stage_index]
        fraction = 1.0 if self.done >= self.total else self.done / self.total
        self.callback(
            ProgressEvent(stage_index + 1, len(self.stages), step_index + 1, stage.steps, fraction, sigma, preview)
        )


def preview_image(backend: FlowBackend, x0_hat: torch.Tensor, size_hw: tuple[int, int], max_side: int) -> np.ndarray:
    """A cheap look at the predicted result: the latent area-downsampled, then decoded by the model's VAE."""
    h, w = x0_hat.shape[-2:]
    factor = max(1, math.ceil(max(h, w) * backend.vae_scale / max_side))
    small = F.interpolate(x0_hat, size=(max(1, h // factor), max(1, w // factor)), mode="area")
    pixels = backend.decode(small)
    keep_h = max(1, round(size_hw[0] * pixels.shape[-2] / (h * backend.vae_scale)))
    keep_w = max(1, round(size_hw[1] * pixels.shape[-1] / (w * backend.vae_scale)))
    return np.round(from_model_tensor(pixels[..., :keep_h, :keep_w]) * 255.0).astype(np.uint8)


# Latent positions around the mask that the model still writes, so the pixel blend's soft edge falls on
# model output rather than on the reference's VAE round trip.
HOLD_MARGIN = 1


class StageField:
    """The velocity one stage integrates: the model's, in tiles where the latent is large, held to the
    re-noised reference (velocity eps - latent, exact along its straight path) outside a mask's region."""

    def __init__(self, backend: FlowBackend, cond: Conditioning, grid: TileGrid, latent: torch.Tensor,
                 noise: torch.Tensor, region: torch.Tensor | None) -> None:
        self.backend, self.cond = backend, cond
        height, width = latent.shape[-2:]
        windows = grid.windows(height, width)
        self.hold = None
        if region is not None:
            self.hold = dilate(region, HOLD_MARGIN).to(latent.device)
            # Tiles touching the region plus the tile overlap of context: the rest is never computed.
            windows = windows_touching(windows, dilate(region, HOLD_MARGIN + grid.overlap))
            self.reference_velocity = noise - latent
        self.whole = self.hold is None and len(windows) == 1 and windows[0].height == height \
            and windows[0].width == width
        self.windows = windows
        self.weights = [] if self.whole else blend_weights(height, width, windows, grid.overlap)

    def __call__(self, x: torch.Tensor, sigma: float) -> torch.Tensor:
        if self.whole:
            return self.backend.velocity(x, sigma, self.cond)
        outside = torch.zeros_like(x) if self.hold is None else self.reference_velocity.clone()
        v = tiled_velocity(self.backend, x, sigma, self.cond, self.windows, self.weights, outside)
        if self.hold is not None:
            v = torch.where(self.hold, v, self.reference_velocity)
        return v


def latent_region(mask: np.ndarray, latent_hw: tuple[int, int], vae_scale: int) -> torch.Tensor:
    """Boolean (h, w): latent positions whose pixels (mask at the stage size, zero-padded) have any weight."""
    h, w = latent_hw
    padded = torch.zeros(h * vae_scale, w * vae_scale)
    padded[: mask.shape[0], : mask.shape[1]] = torch.from_numpy(np.ascontiguousarray(mask, dtype=np.float32))
    return F.max_pool2d(padded[None, None], vae_scale)[0, 0] > 0


def _denoise_stage(
    x: torch.Tensor,
    stage: Stage,
    index: int,
    size_hw: tuple[int, int],
    *,
    backend: FlowBackend,
    field: StageField,
    progress: _Progress,
    cancel: CancelToken | None,
    preview_every: int,
    preview_side: int,
) -> torch.Tensor:
    """Integrate one stage's flow ODE from its re-noised latent, reporting each step."""
    last_v: list[torch.Tensor] = []  # the step's velocity, kept only for the preview's x0_hat

    def velocity(x_sigma: torch.Tensor, sigma: float) -> torch.Tensor:
        v = field(x_sigma, sigma)
        if preview_every:
            last_v[:] = [v]
        return v

    def on_step(step: int, sigma: float, x_next: torch.Tensor) -> None:
        preview = None
        if preview_every and ((step + 1) % preview_every == 0 or step + 1 == stage.steps):
            # x0_hat is constant along an Euler step, so the stepped x and the sigma reached give it too.
            preview = preview_image(backend, predicted_x0(x_next, last_v[0], sigma), size_hw, preview_side)
        progress.step(index, step, sigma, preview)

    return euler(velocity, x, stage.sigmas, on_step=on_step, cancel=cancel)


def run_stages(
    rgb: np.ndarray,
    stages: list[Stage],
    *,
    strength: float,
    seed: int,
    backend: FlowBackend,
    cond: Conditioning,
    grid: TileGrid | None = None,
    mask: np.ndarray | None = None,
    on_progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
    preview_every: int = 0,
    preview_side: int = 256,
) -> np.ndarray:
    """Run the planned stages on (H, W, 3) float colour in [0, 1]; returns the final stage's colour.

    Latents larger than `grid`'s tile (default: the model's) are denoised, encoded and decoded in blended
    tiles. With a soft `mask` ((H, W) in [0, 1], 0 = keep), only tiles near it are computed, the latent
    elsewhere follows the re-noised reference, and each stage's pixels are blended by the mask with the
    conventional upscale of `rgb`. With `preview_every` = N > 0, every Nth step of a stage (and its last)
    carries a preview of at most `preview_side` pixels a side; each costs one small VAE decode.
    """
    grid = grid or TileGrid.for_backend(backend, backend.default_tile_size, backend.default_tile_overlap)
    progress = _Progress(stages, on_progress)
    # One CPU generator for all noise: the same seed gives the same bytes on any device.
    generator = torch.Generator("cpu").manual_seed(seed)
    current = rgb
    for index, stage in enumerate(stages):
        if cancel is not None:
            cancel.raise_if_cancelled()
        upsampled = conventional_resize(current, stage.size)
        padded, size_hw = pad_to_multiple(to_model_tensor(upsampled), backend.latent_multiple)
        latent = tiled_encode(backend, padded, grid)
        del padded
        noise = torch.randn(latent.shape, generator=generator, dtype=torch.float32).to(latent.device)
        x = renoise(latent, noise, strength)
        stage_mask = None if mask is None else conventional_resize(mask, stage.size)
        region = None if stage_mask is None else latent_region(stage_mask, latent.shape[-2:], backend.vae_scale)
        field = StageField(backend, backend.condition_stage(cond, latent), grid, latent, noise, region)
        del latent, noise
        x = _denoise_stage(x, stage, index, size_hw, backend=backend, field=field, progress=progress,
                           cancel=cancel, preview_every=preview_every, preview_side=preview_side)
        del field
        if cancel is not None:
            cancel.raise_if_cancelled()
        current = from_model_tensor(crop_to(tiled_decode(backend, x, grid), size_hw))
        del x
        if stage_mask is not None:
            weight = stage_mask[:, :, None]
            current = weight * current + (1.0 - weight) * conventional_resize(rgb, stage.size)
    return current
