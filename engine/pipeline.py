"""Progressive flow upscale (DESIGN §The algorithm 1-3, 8): upsample, re-noise, flow-denoise, per stage."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from engine.backends.base import Conditioning, FlowBackend
from engine.field import OFF, StageField, Trajectory
from engine.guidance import match_dilated_statistics, match_statistics, scale_aware_sigma
from engine.pixels import conventional_resize, crop_to, from_model_tensor, mask_resize, pad_to_multiple, to_model_tensor
from engine.progress import CancelToken, ProgressCallback
from engine.sampler import euler, predicted_x0, renoise
from engine.schedule import remaining_sigmas
from engine.settings import StructureGuidance
from engine.stages import stage_sizes
from engine.tiled import TileGrid, tiled_decode, tiled_encode
from engine.tiling import covering_windows
from engine.work import Phase, Work

TILE_PREVIEW_S = 5.0  # within a long tiled step, a preview of the tiles done so far this often


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


def _tiled_positions(backend: FlowBackend, grid: TileGrid, latent_hw: tuple[int, int]) -> int:
    """Latent positions the tiles of a latent this size cover, overlaps counted twice: what tiled work costs."""
    if grid.fits(*latent_hw):
        return latent_hw[0] * latent_hw[1]
    return sum(w.height * w.width for w in grid.windows(*latent_hw))


def _vae_phases(key: str, text: str, rate: float, latent_hw: tuple[int, int], *, backend: FlowBackend,
                grid: TileGrid, where: dict[str, Any]) -> list[Phase]:
    """An encode or decode: one pass, or in tiles a statistics pass (where the VAE has GroupNorms) and the pass."""
    tiled = backend.vae_tiling and not grid.fits(*latent_hw)
    windows = grid.vae_windows(*latent_hw) if tiled else []
    cost = rate * (sum(w.height * w.width for w in windows) if tiled else latent_hw[0] * latent_hw[1])
    norms = tiled and backend.vae_module is not None and any(
        isinstance(m, nn.GroupNorm) for m in backend.vae_module.modules())
    sample = covering_windows(windows) if grid.statistics_cover and key.endswith("encode") else windows
    first_cost = rate * sum(w.height * w.width for w in sample)
    first = [Phase(f"{key}:statistics", f"{text}: statistics pass", first_cost, **where)] if norms else []
    return [*first, Phase(key, text, cost, **where)]


def plan_work(stages: list[Stage], *, backend: FlowBackend, grid: TileGrid, guidance: StructureGuidance,
              input_hw: tuple[int, int]) -> list[Phase]:
    """Every phase `run_stages` (and `engine.api`'s composite) will go through, each costed from the backend's
    `work_costs` and the latent positions it covers: what weighs the progress fraction (engine.work)."""
    costs = backend.work_costs
    phases: list[Phase] = []
    if stages and (guidance.uses_reference or guidance.match_statistics) and stages[0].steps:
        m, f = backend.latent_multiple, backend.vae_scale
        ref_hw = (-(-input_hw[0] // m) * m // f, -(-input_hw[1] // m) * m // f)
        where = {"stage": 1, "steps": stages[0].steps, "sigma": stages[0].sigmas[0]}
        phases += _vae_phases("reference:encode", "reference pass: encoding", costs.encode, ref_hw,
                              backend=backend, grid=grid, where=where)
        if guidance.uses_reference:
            calls = costs.model * _tiled_positions(backend, grid, ref_hw)
            phases += [Phase(f"reference:step{n}", "reference pass: denoising", calls, **where,
                             note=f" (step {n}/{stages[0].steps})" if stages[0].steps > 1 else "")
                       for n in range(1, stages[0].steps + 1)]
    for index, stage in enumerate(stages):
        hw, number, steps = stage.latent_hw, index + 1, stage.steps
        where = {"stage": number, "steps": steps, "sigma": stage.sigmas[0]}
        phases.append(Phase(f"{index}:upsample", "upsampling", costs.resize * hw[0] * hw[1], **where))
        phases += _vae_phases(f"{index}:encode", "encoding", costs.encode, hw, backend=backend, grid=grid, where=where)
        calls = costs.model * _tiled_positions(backend, grid, hw)
        phases += [Phase(f"{index}:step{n}", "denoising", calls, number, n, steps, stage.sigmas[n],
                         note=f" (step {n}/{steps})" if steps > 1 else "") for n in range(1, steps + 1)]
        where = {"stage": number, "step": steps, "steps": steps, "sigma": stage.sigmas[-1]}
        phases += _vae_phases(f"{index}:decode", "decoding", costs.decode, hw, backend=backend, grid=grid, where=where)
    if stages:
        last = stages[-1]
        phases.append(Phase("finish", "finishing", costs.finish * last.latent_hw[0] * last.latent_hw[1],
                            len(stages), last.steps, last.steps, last.sigmas[-1]))
    return phases


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
    size_hw: tuple[int, int],
    *,
    backend: FlowBackend,
    field: StageField,
    work: Work,
    cancel: CancelToken | None,
    preview_every: int,
    preview_side: int,
) -> torch.Tensor:
    """Integrate one stage's flow ODE from its re-noised latent (the field reports each model call to `work`),
    with a preview every `preview_every` steps."""
    last_v: list[torch.Tensor] = []  # the step's velocity, kept only for the preview's x0_hat
    if preview_every and not field.whole:
        # A tiled step can run for minutes (a one-step model on a big photo): between its tiles, a preview
        # of the tiles done so far, at most every TILE_PREVIEW_S.
        last_preview = [time.monotonic()]

        def tile_preview(x0_so_far: Callable[[], torch.Tensor]) -> None:
            if time.monotonic() - last_preview[0] >= TILE_PREVIEW_S:
                work.preview(preview_image(backend, x0_so_far(), size_hw, preview_side))
                last_preview[0] = time.monotonic()

        field.tile_preview = tile_preview

    def velocity(x_sigma: torch.Tensor, sigma: float) -> torch.Tensor:
        v = field(x_sigma, sigma)
        if preview_every:
            last_v[:] = [v]
        return v

    def on_step(step: int, sigma: float, x_next: torch.Tensor) -> None:
        if preview_every and ((step + 1) % preview_every == 0 or step + 1 == stage.steps):
            # x0_hat is constant along an Euler step, so the stepped x and the sigma reached give it too.
            work.preview(preview_image(backend, predicted_x0(x_next, last_v[0], sigma), size_hw, preview_side))

    return euler(velocity, x, stage.sigmas, on_step=on_step if preview_every else None, cancel=cancel)


def _matched(latent: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """APT statistical matching of an upsampled latent to the latent it came from: each dilated view
    (the factor² interleaved sub-grids) gets the reference's channel mean and std; whole latent otherwise."""
    factor = round(latent.shape[-1] / reference.shape[-1])
    if factor >= 2 and latent.shape[-1] % factor == 0 and latent.shape[-2] % factor == 0:
        return match_dilated_statistics(latent, reference.to(latent.device), factor)
    return match_statistics(latent, reference.to(latent.device))


def encode_pixels(rgb: np.ndarray, backend: FlowBackend, grid: TileGrid, work: Work | None = None,
                  key: str = "encode") -> tuple[torch.Tensor, tuple[int, int]]:
    """(H, W, 3) colour -> the model's latent (reflect-padded to the latent multiple, tiled where large) and
    the (H, W) to crop its decoding back to; the encode is `work`'s phase `key`."""
    padded, size_hw = pad_to_multiple(to_model_tensor(rgb), backend.latent_multiple)
    return tiled_encode(backend, padded, grid, work, key), size_hw


def reference_pass(rgb: np.ndarray, sigmas: tuple[float, ...], *, backend: FlowBackend, cond: Conditioning,
                   grid: TileGrid, generator: torch.Generator, cancel: CancelToken | None = None,
                   work: Work | None = None) -> tuple[Trajectory, torch.Tensor]:
    """The first stage's reference: the same flow run on the input at its own size, x0_hat recorded at
    every sigma (DESIGN §4, HiFlow's low-resolution trajectory). Returns it and the input's latent."""
    latent, _ = encode_pixels(rgb, backend, grid, work, "reference:encode")
    noise = torch.randn(latent.shape, generator=generator, dtype=torch.float32).to(latent.device)
    field = StageField(backend, backend.condition_stage(cond, latent), grid, latent, noise, sigmas,
                       keep_trajectory=True, work=work, work_key="reference")
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
    work: Work | None = None,
    upsample: Callable[[np.ndarray, tuple[int, int]], np.ndarray] | None = None,
) -> np.ndarray:
    """Run the planned stages on (H, W, 3) float colour in [0, 1]; returns the final stage's colour.

    Latents larger than `grid`'s tile (default: the model's) are denoised, encoded and decoded in blended
    tiles. With a soft `mask` ((H, W) in [0, 1], 0 = keep), only tiles near it are computed, the latent
    elsewhere follows the re-noised reference, and each stage but the last has its pixels blended by the
    mask with the conventional upscale of `rgb`; the caller composites the last one (engine.api).
    `guidance` steers each stage toward the one before (DESIGN §4); for the first stage that needs a
    reference, one pass at the input size runs first. With `preview_every` = N > 0, every Nth step of a
    stage (and its last) carries a preview of at most `preview_side` pixels a side; each costs one small
    VAE decode. Progress goes to `work` (engine.api's, which goes on to the composite), or else to
    `on_progress` through a `Work` of this call's own; `cancel` is honoured between tiles. `upsample` (an SR
    model, engine.sr) replaces Lanczos for the first stage's upsample only (README "Using your upscale
    models" says why).
    """
    grid = grid or TileGrid.for_backend(backend)
    own_work = work is None
    if work is None:
        phases = plan_work(stages, backend=backend, grid=grid, guidance=guidance, input_hw=rgb.shape[:2])
        work = Work(phases, len(stages), on_progress, cancel)
    # One CPU generator for all noise: the same seed gives the same bytes on any device.
    generator = torch.Generator("cpu").manual_seed(seed)
    current = rgb
    reference, previous_latent = None, None
    if stages and (guidance.uses_reference or guidance.match_statistics) and stages[0].steps:
        if guidance.uses_reference:
            reference, previous_latent = reference_pass(rgb, stages[0].sigmas, backend=backend, cond=cond,
                                                        grid=grid, generator=generator, cancel=cancel, work=work)
        else:
            previous_latent, _ = encode_pixels(rgb, backend, grid, work, "reference:encode")
    for index, stage in enumerate(stages):
        work.begin(f"{index}:upsample")
        grow = upsample if upsample is not None and index == 0 else conventional_resize
        upsampled = grow(current, stage.size)
        work.unit()
        latent, size_hw = encode_pixels(upsampled, backend, grid, work, f"{index}:encode")
        del upsampled
        del current  # the stage's input lives on in the latent; full-size buffers are what peaks
        if guidance.match_statistics and previous_latent is not None:
            latent = _matched(latent, previous_latent)
        noise = torch.randn(latent.shape, generator=generator, dtype=torch.float32).to(latent.device)
        x = renoise(latent, noise, stage.sigmas[0])
        stage_mask = None if mask is None else mask_resize(mask, stage.size)
        region = None if stage_mask is None else latent_region(stage_mask, latent.shape[-2:], backend.vae_scale)
        field = StageField(backend, backend.condition_stage(cond, latent), grid, latent, noise, stage.sigmas,
                           region=region, guidance=guidance, reference=reference,
                           keep_trajectory=guidance.uses_reference and index + 1 < len(stages), generator=generator,
                           work=work, work_key=str(index))
        del latent, noise
        x = _denoise_stage(x, stage, size_hw, backend=backend, field=field, work=work,
                           cancel=cancel, preview_every=preview_every, preview_side=preview_side)
        reference = field.trajectory
        del field
        previous_latent = x if guidance.match_statistics else None
        current = from_model_tensor(crop_to(tiled_decode(backend, x, grid, work, f"{index}:decode"), size_hw))
        del x
        if stage_mask is not None and index + 1 < len(stages):
            # The last stage is composited once, by the caller, against the whole image's conventional upscale:
            # blending it here as well would weigh the model's pixels by the mask squared.
            weight = stage_mask[:, :, None]
            current = weight * current + (1.0 - weight) * conventional_resize(rgb, stage.size)
    if own_work:
        work.finish()
    return current
