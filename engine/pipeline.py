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


@dataclass(frozen=True)
class Stage:
    """One progressive stage: its output size, padded latent size, and the sigmas it integrates."""

    size: tuple[int, int]  # (width, height) in pixels after this stage
    latent_hw: tuple[int, int]
    sigmas: tuple[float, ...]

    @property
    def steps(self) -> int:
        return len(self.sigmas) - 1


def plan(width: int, height: int, scale: float, strength: float, steps: int, backend: FlowBackend) -> list[Stage]:
    """Every stage of an upscale, computed before any model call so progress can be weighted by cost."""
    multiple = backend.latent_multiple
    stages = []
    for w, h in stage_sizes(width, height, scale):
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


def _denoise_stage(
    x: torch.Tensor,
    stage: Stage,
    index: int,
    size_hw: tuple[int, int],
    *,
    backend: FlowBackend,
    cond: Conditioning,
    progress: _Progress,
    cancel: CancelToken | None,
    preview_every: int,
    preview_side: int,
) -> torch.Tensor:
    """Integrate one stage's flow ODE from its re-noised latent, reporting each step."""
    last_v: list[torch.Tensor] = []  # the step's velocity, kept only for the preview's x0_hat

    def velocity(x_sigma: torch.Tensor, sigma: float) -> torch.Tensor:
        v = backend.velocity(x_sigma, sigma, cond)
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
    on_progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
    preview_every: int = 0,
    preview_side: int = 256,
) -> np.ndarray:
    """Run the planned stages on (H, W, 3) float colour in [0, 1]; returns the final stage's colour.

    With `preview_every` = N > 0, every Nth step of a stage (and its last) carries a preview of at most
    `preview_side` pixels a side; each costs one small VAE decode.
    """
    progress = _Progress(stages, on_progress)
    # One CPU generator for all noise: the same seed gives the same bytes on any device.
    generator = torch.Generator("cpu").manual_seed(seed)
    current = rgb
    for index, stage in enumerate(stages):
        if cancel is not None:
            cancel.raise_if_cancelled()
        upsampled = conventional_resize(current, stage.size)
        padded, size_hw = pad_to_multiple(to_model_tensor(upsampled), backend.latent_multiple)
        latent = backend.encode(padded)
        noise = torch.randn(latent.shape, generator=generator, dtype=torch.float32).to(latent.device)
        x = renoise(latent, noise, strength)
        stage_cond = backend.condition_stage(cond, latent)
        del latent, padded
        x = _denoise_stage(x, stage, index, size_hw, backend=backend, cond=stage_cond, progress=progress,
                           cancel=cancel, preview_every=preview_every, preview_side=preview_side)
        del stage_cond
        if cancel is not None:
            cancel.raise_if_cancelled()
        current = from_model_tensor(crop_to(backend.decode(x), size_hw))
        del x
    return current
