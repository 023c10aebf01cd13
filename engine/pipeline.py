"""Progressive flow upscale (DESIGN §The algorithm 1-3, 8): upsample, re-noise, flow-denoise, per stage."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from engine.backends.base import Conditioning, FlowBackend
from engine.field import (
    HOLD_MARGIN,
    Aligned,
    ModelVelocity,
    Trajectory,
    chain,
    held,
    on_reference_path,
    skip_residual_move,
)
from engine.guidance import match_dilated_statistics, match_statistics
from engine.pixels import conventional_resize, crop_to, from_model_tensor, mask_resize, pad_to_multiple, to_model_tensor
from engine.progress import CancelToken, ProgressCallback
from engine.recipe import Recipe
from engine.sampler import Prepare, Step, VelocityFn, euler, euler_ancestral, heun, model_calls, renoise
from engine.stages import Stage
from engine.tile_grid import TileGrid, dilate
from engine.tiled_model import tiled_decode, tiled_encode
from engine.work import Phase, Work

TILE_PREVIEW_S = 5.0  # within a long tiled step, a preview of the tiles done so far this often
PREVIEW_SIDE = 256  # pixels a preview's longer side has at most


def _tiled_positions(backend: FlowBackend, grid: TileGrid, latent_hw: tuple[int, int]) -> int:
    """Latent positions the tiles of a latent this size cover, overlaps counted twice: what tiled work costs."""
    if grid.fits(*latent_hw):
        return latent_hw[0] * latent_hw[1]
    return sum(w.height * w.width for w in grid.windows(*latent_hw))


def _vae_phases(key: str, text: str, rate: float, latent_hw: tuple[int, int], *, backend: FlowBackend,
                grid: TileGrid, where: dict[str, Any]) -> list[Phase]:
    """An encode or decode: one pass, or in tiles a statistics pass (where the VAE has GroupNorms) and the pass."""
    tiled = backend.vae_tiling and not grid.fits(*latent_hw)
    cost = rate * _tiled_positions(backend, grid, latent_hw)
    norms = tiled and backend.vae_module is not None and any(
        isinstance(m, nn.GroupNorm) for m in backend.vae_module.modules())
    first = [Phase(f"{key}:statistics", f"{text}: statistics pass", cost, **where)] if norms else []
    return [*first, Phase(key, text, cost, **where)]


def plan_work(recipe: Recipe, *, backend: FlowBackend, input_hw: tuple[int, int]) -> list[Phase]:
    """Every phase `run_stages` (and `engine.api`'s composite) will go through, each costed from the backend's
    `work_costs`, the latent positions it covers and the sampler's model calls: what weighs the progress
    fraction (engine.work)."""
    costs, grid, stages = backend.work_costs, recipe.grid, recipe.stages
    phases: list[Phase] = []
    if recipe.needs_reference:
        m, f = backend.latent_multiple, backend.vae_scale
        ref_hw = (-(-input_hw[0] // m) * m // f, -(-input_hw[1] // m) * m // f)
        first = stages[0]
        where = {"stage": 1, "steps": first.steps, "sigma": first.sigmas[0]}
        phases += _vae_phases("reference:encode", "reference pass: encoding", costs.encode, ref_hw,
                              backend=backend, grid=grid, where=where)
        if recipe.guidance.uses_reference:
            calls = costs.model * _tiled_positions(backend, grid, ref_hw)
            phases += [Phase(f"reference:step{n}", "reference pass: denoising",
                             calls * model_calls(recipe.sampler, first.sigmas[n]), **where,
                             note=f" (step {n}/{first.steps})" if first.steps > 1 else "")
                       for n in range(1, first.steps + 1)]
    for index, stage in enumerate(stages):
        hw, number, steps = stage.latent_hw, index + 1, stage.steps
        where = {"stage": number, "steps": steps, "sigma": stage.sigmas[0]}
        phases.append(Phase(f"{index}:upsample", "upsampling", costs.resize * hw[0] * hw[1], **where))
        phases += _vae_phases(f"{index}:encode", "encoding", costs.encode, hw, backend=backend, grid=grid, where=where)
        calls = costs.model * _tiled_positions(backend, grid, hw)
        phases += [Phase(f"{index}:step{n}", "denoising", calls * model_calls(recipe.sampler, stage.sigmas[n]),
                         number, n, steps, stage.sigmas[n], note=f" (step {n}/{steps})" if steps > 1 else "")
                   for n in range(1, steps + 1)]
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


def stage_velocity(backend: FlowBackend, cond: Conditioning, recipe: Recipe, stage: Stage, latent: torch.Tensor,
                   noise: torch.Tensor, *, region: torch.Tensor | None = None, reference: Trajectory | None = None,
                   work: Work | None = None
                   ) -> tuple[ModelVelocity, VelocityFn, Prepare | None, Callable[[Step], torch.Tensor]]:
    """One stage's model velocity; the same wrapped by the recipe's structure guidance and the mask hold; the
    move (if any) each step starts with; and where a step's x0_hat comes from: engine.field put together."""
    g, sigma_start = recipe.guidance, stage.sigmas[0]
    reference_velocity = None if region is None else noise - latent  # eps - latent: keeps x on the reference path
    model = ModelVelocity(backend, cond, recipe.grid, latent, sigma_start=sigma_start, region=region,
                          outside=reference_velocity, dilated_views=g.dilated_views, work=work)
    velocity: VelocityFn = model
    denoised: Callable[[Step], torch.Tensor] = lambda step: step.denoised  # noqa: E731
    if g.uses_reference and reference is not None and len(reference):
        velocity = aligned = Aligned(velocity, reference, sigma_start=sigma_start, direction=g.direction_alignment,
                                     acceleration=g.acceleration_alignment)
        denoised = aligned.denoised
    moves: list[Prepare | None] = []
    if g.skip_residual > 0.0:
        moves.append(skip_residual_move(latent, noise, sigma_start=sigma_start, weight=g.skip_residual))
    if region is not None and reference_velocity is not None:
        hold = dilate(region, HOLD_MARGIN).to(latent.device)
        velocity = held(velocity, hold, reference_velocity)
        if g.stochastic > 0.0:
            moves.append(on_reference_path(hold, latent, noise))
    return model, velocity, chain(*moves), denoised


def integrate(recipe: Recipe, velocity: VelocityFn, x: torch.Tensor, sigmas: tuple[float, ...], *,
              generator: torch.Generator, prepare: Prepare | None = None,
              on_step: Callable[[Step], None] | None = None, cancel: CancelToken | None = None,
              stochastic: bool = True) -> torch.Tensor:
    """Run the recipe's sampler; Euler with `stochastic` > 0 (and `stochastic` allowed) is Euler-ancestral."""
    if recipe.sampler == "heun":
        return heun(velocity, x, sigmas, prepare=prepare, on_step=on_step, cancel=cancel)
    if stochastic and recipe.guidance.stochastic > 0.0:
        return euler_ancestral(velocity, x, sigmas, eta=recipe.guidance.stochastic, generator=generator,
                               prepare=prepare, on_step=on_step, cancel=cancel)
    return euler(velocity, x, sigmas, prepare=prepare, on_step=on_step, cancel=cancel)


def _stepper(work: Work | None, key: str, sampler: str, calls: int, sigmas: tuple[float, ...],
             *also: Callable[[Step], None]) -> Callable[[Step], None]:
    """Begins step 1's phase of `work` now and each next one as a step ends (a step's units: the tiles of each
    of its model calls), after calling `also` with the step."""
    def begin(n: int) -> None:
        if work is not None:
            work.begin(f"{key}:step{n}", calls * model_calls(sampler, sigmas[n]))

    if len(sigmas) > 1:
        begin(1)

    def on_step(step: Step) -> None:
        for callback in also:
            callback(step)
        if step.index + 2 < len(sigmas):
            begin(step.index + 2)
    return on_step


def reference_pass(rgb: np.ndarray, recipe: Recipe, *, backend: FlowBackend, cond: Conditioning,
                   generator: torch.Generator, cancel: CancelToken | None = None,
                   work: Work | None = None) -> tuple[Trajectory, torch.Tensor]:
    """The first stage's reference: the same flow (plain, deterministic) run on the input at its own size,
    x0_hat recorded at every sigma (DESIGN §4, HiFlow's low-resolution trajectory). Returns it and the
    input's latent."""
    sigmas = recipe.stages[0].sigmas
    latent, _ = encode_pixels(rgb, backend, recipe.grid, work, "reference:encode")
    noise = torch.randn(latent.shape, generator=generator, dtype=torch.float32).to(latent.device)
    model = ModelVelocity(backend, backend.condition_stage(cond, latent, sigmas), recipe.grid, latent,
                          sigma_start=sigmas[0], work=work)
    trajectory = Trajectory()
    on_step = _stepper(work, "reference", recipe.sampler, model.calls, sigmas,
                       lambda step: trajectory.record(step.sigma, step.denoised))
    integrate(recipe, model, renoise(latent, noise, sigmas[0]), sigmas, generator=generator, on_step=on_step,
              cancel=cancel, stochastic=False)
    return trajectory, latent


def run_stages(
    rgb: np.ndarray,
    recipe: Recipe,
    *,
    backend: FlowBackend,
    cond: Conditioning,
    mask: np.ndarray | None = None,
    on_progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
    work: Work | None = None,
    upsample: Callable[[np.ndarray, tuple[int, int]], np.ndarray] | None = None,
) -> np.ndarray:
    """Run the recipe's stages on (H, W, 3) float colour in [0, 1]; returns the final stage's colour.

    Latents larger than the recipe's tile are denoised, encoded and decoded in blended tiles. With a soft
    `mask` ((H, W) in [0, 1], 0 = keep), only tiles near it are computed, the latent elsewhere follows the
    re-noised reference, and each stage but the last has its pixels blended by the mask with the
    conventional upscale of `rgb`; the caller composites the last one (engine.api). Structure guidance
    steers each stage toward the one before (DESIGN §4); for the first stage that needs a reference, one
    pass at the input size runs first. With `preview_every` = N > 0, every Nth step of a stage (and its
    last) carries a preview of at most `PREVIEW_SIDE` pixels a side; each costs one small VAE decode.
    Progress goes to `work` (engine.api's, which goes on to the composite), or else to `on_progress`
    through a `Work` of this call's own; `cancel` is honoured between tiles. `upsample` (an SR model,
    engine.sr) replaces Lanczos for the first stage's upsample only (README "Using your upscale models").
    """
    stages, grid, guidance = recipe.stages, recipe.grid, recipe.guidance
    own_work = work is None
    if work is None:
        work = Work(plan_work(recipe, backend=backend, input_hw=rgb.shape[:2]), len(stages), on_progress, cancel)
    # One CPU generator for all noise: the same seed gives the same bytes on any device.
    generator = torch.Generator("cpu").manual_seed(recipe.seed)
    current = rgb
    reference, previous_latent = None, None
    if recipe.needs_reference:
        if guidance.uses_reference:
            reference, previous_latent = reference_pass(rgb, recipe, backend=backend, cond=cond, generator=generator,
                                                        cancel=cancel, work=work)
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
        keep = guidance.uses_reference and index + 1 < len(stages)
        x, reference = _denoise_stage(x, stage, size_hw, recipe, backend=backend,
                                      cond=backend.condition_stage(cond, latent, stage.sigmas), latent=latent,
                                      noise=noise,
                                      region=region, reference=reference, keep_trajectory=keep, generator=generator,
                                      work=work, key=str(index), cancel=cancel)
        del latent, noise
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


def _denoise_stage(x: torch.Tensor, stage: Stage, size_hw: tuple[int, int], recipe: Recipe, *, backend: FlowBackend,
                   cond: Conditioning, latent: torch.Tensor, noise: torch.Tensor, region: torch.Tensor | None,
                   reference: Trajectory | None, keep_trajectory: bool, generator: torch.Generator, work: Work,
                   key: str, cancel: CancelToken | None) -> tuple[torch.Tensor, Trajectory | None]:
    """Integrate one stage's flow ODE from its re-noised latent `x`: each model call a unit of `work`, a
    preview every `recipe.preview_every` steps, and (with `keep_trajectory`) x0_hat recorded for the next stage."""
    model, velocity, prepare, denoised = stage_velocity(backend, cond, recipe, stage, latent, noise, region=region,
                                              reference=reference, work=work)
    every = recipe.preview_every
    if every and not model.whole:
        # A tiled step can run for minutes (a one-step model on a big photo): between its tiles, a preview
        # of the tiles done so far, at most every TILE_PREVIEW_S.
        last_preview = [time.monotonic()]

        def tile_preview(x0_so_far: Callable[[], torch.Tensor]) -> None:
            if time.monotonic() - last_preview[0] >= TILE_PREVIEW_S:
                work.preview(preview_image(backend, x0_so_far(), size_hw, PREVIEW_SIDE))
                last_preview[0] = time.monotonic()

        model.tile_preview = tile_preview
    trajectory = Trajectory() if keep_trajectory else None

    def record(step: Step) -> None:
        if trajectory is not None:
            trajectory.record(step.sigma, denoised(step))
        if every and ((step.index + 1) % every == 0 or step.index + 1 == stage.steps):
            work.preview(preview_image(backend, step.denoised, size_hw, PREVIEW_SIDE))

    on_step = _stepper(work, key, recipe.sampler, model.calls, stage.sigmas, record)
    x = integrate(recipe, velocity, x, stage.sigmas, generator=generator, prepare=prepare, on_step=on_step,
                  cancel=cancel)
    return x, trajectory
