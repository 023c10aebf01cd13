"""Progressive flow upscale (DESIGN §The algorithm 1-3, 8): upsample, re-noise, flow-denoise, per stage."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from engine.backends.base import Conditioning, FlowBackend
from engine.field import OFF, StageField, Trajectory
from engine.guidance import match_dilated_statistics, match_statistics, scale_aware_sigma
from engine.pixels import conventional_resize, crop_to, from_model_tensor, pad_to_multiple, to_model_tensor
from engine.progress import CancelToken, ProgressCallback, ProgressEvent
from engine.sampler import euler, predicted_x0, renoise
from engine.schedule import remaining_sigmas
from engine.settings import StructureGuidance
from engine.stages import stage_sizes
from engine.tiled import TileGrid, tiled_decode, tiled_encode


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
         final_size: tuple[int, int] | None = None, scale_aware: bool = False) -> list[Stage]:
    """Every stage of an upscale, computed before any model call so progress can be weighted by cost.

    With `scale_aware` (APT), each stage starts from `scale_aware_sigma(strength, its factor)` instead of
    `strength` itself: a bigger step in size gets more noise to invent its detail from.
    """
    multiple = backend.latent_multiple
    stages = []
    previous = width
    for w, h in stage_sizes(width, height, scale, final_size):
        padded_w, padded_h = -(-w // multiple) * multiple, -(-h // multiple) * multiple
        latent_hw = (padded_h // backend.vae_scale, padded_w // backend.vae_scale)
        start = scale_aware_sigma(strength, w / previous) if scale_aware and 0.0 < strength < 1.0 else strength
        # mu stays at the native token count: extrapolating it with the output size makes the shift
        # explode (FLUX: shift ≈ 25 at 2K), which wipes out the structure we came to keep.
        sigmas = remaining_sigmas(steps, start, backend.shift_rule, backend.native_tokens)
        stages.append(Stage((w, h), latent_hw, tuple(sigmas)))
        previous = w
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


def _matched(latent: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """APT statistical matching of an upsampled latent to the latent it came from: each dilated view
    (the factor² interleaved sub-grids) gets the reference's channel mean and std; whole latent otherwise."""
    factor = round(latent.shape[-1] / reference.shape[-1])
    if factor >= 2 and latent.shape[-1] % factor == 0 and latent.shape[-2] % factor == 0:
        return match_dilated_statistics(latent, reference.to(latent.device), factor)
    return match_statistics(latent, reference.to(latent.device))


def encode_pixels(rgb: np.ndarray, backend: FlowBackend, grid: TileGrid) -> tuple[torch.Tensor, tuple[int, int]]:
    """(H, W, 3) colour -> the model's latent (reflect-padded to the latent multiple, tiled where large) and
    the (H, W) to crop its decoding back to."""
    padded, size_hw = pad_to_multiple(to_model_tensor(rgb), backend.latent_multiple)
    return tiled_encode(backend, padded, grid), size_hw


def reference_pass(rgb: np.ndarray, sigmas: tuple[float, ...], *, backend: FlowBackend, cond: Conditioning,
                   grid: TileGrid, generator: torch.Generator,
                   cancel: CancelToken | None = None) -> tuple[Trajectory, torch.Tensor]:
    """The first stage's reference: the same flow run on the input at its own size, x0_hat recorded at
    every sigma (DESIGN §4, HiFlow's low-resolution trajectory). Returns it and the input's latent."""
    latent, _ = encode_pixels(rgb, backend, grid)
    noise = torch.randn(latent.shape, generator=generator, dtype=torch.float32).to(latent.device)
    field = StageField(backend, backend.condition_stage(cond, latent), grid, latent, noise, sigmas,
                       keep_trajectory=True)
    euler(field, renoise(latent, noise, sigmas[0]), sigmas, cancel=cancel)
    return field.trajectory, latent


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
    guidance: StructureGuidance = OFF,
    on_progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
    preview_every: int = 0,
    preview_side: int = 256,
    upsample: Callable[[np.ndarray, tuple[int, int]], np.ndarray] | None = None,
) -> np.ndarray:
    """Run the planned stages on (H, W, 3) float colour in [0, 1]; returns the final stage's colour.

    Latents larger than `grid`'s tile (default: the model's) are denoised, encoded and decoded in blended
    tiles. With a soft `mask` ((H, W) in [0, 1], 0 = keep), only tiles near it are computed, the latent
    elsewhere follows the re-noised reference, and each stage but the last has its pixels blended by the
    mask with the conventional upscale of `rgb`; the caller composites the last one (engine.api).
    `guidance` steers each stage toward the one before (DESIGN §4); for the first stage that needs a
    reference, one pass at the input size runs first (not in the progress fraction). With
    `preview_every` = N > 0, every Nth step of a stage (and its last) carries a preview of at most
    `preview_side` pixels a side; each costs one small VAE decode. `upsample` (an SR model, engine.sr) replaces
    Lanczos for the first stage's upsample only (README "Using your upscale models" says why).
    """
    grid = grid or TileGrid.for_backend(backend)
    progress = _Progress(stages, on_progress)
    # One CPU generator for all noise: the same seed gives the same bytes on any device.
    generator = torch.Generator("cpu").manual_seed(seed)
    current = rgb
    reference, previous_latent = None, None
    if stages and (guidance.uses_reference or guidance.match_statistics) and stages[0].steps:
        if guidance.uses_reference:
            reference, previous_latent = reference_pass(rgb, stages[0].sigmas, backend=backend, cond=cond,
                                                        grid=grid, generator=generator, cancel=cancel)
        else:
            previous_latent, _ = encode_pixels(rgb, backend, grid)
    for index, stage in enumerate(stages):
        if cancel is not None:
            cancel.raise_if_cancelled()
        grow = upsample if upsample is not None and index == 0 else conventional_resize
        latent, size_hw = encode_pixels(grow(current, stage.size), backend, grid)
        del current  # the stage's input lives on in the latent; full-size buffers are what peaks
        if guidance.match_statistics and previous_latent is not None:
            latent = _matched(latent, previous_latent)
        noise = torch.randn(latent.shape, generator=generator, dtype=torch.float32).to(latent.device)
        x = renoise(latent, noise, stage.sigmas[0])
        stage_mask = None if mask is None else conventional_resize(mask, stage.size)
        region = None if stage_mask is None else latent_region(stage_mask, latent.shape[-2:], backend.vae_scale)
        field = StageField(backend, backend.condition_stage(cond, latent), grid, latent, noise, stage.sigmas,
                           region=region, guidance=guidance, reference=reference,
                           keep_trajectory=guidance.uses_reference and index + 1 < len(stages), generator=generator)
        del latent, noise
        x = _denoise_stage(x, stage, index, size_hw, backend=backend, field=field, progress=progress,
                           cancel=cancel, preview_every=preview_every, preview_side=preview_side)
        reference = field.trajectory
        del field
        if cancel is not None:
            cancel.raise_if_cancelled()
        previous_latent = x if guidance.match_statistics else None
        current = from_model_tensor(crop_to(tiled_decode(backend, x, grid), size_hw))
        del x
        if stage_mask is not None and index + 1 < len(stages):
            # The last stage is composited once, by the caller, against the whole image's conventional upscale:
            # blending it here as well would weigh the model's pixels by the mask squared.
            weight = stage_mask[:, :, None]
            current = weight * current + (1.0 - weight) * conventional_resize(rgb, stage.size)
    return current
