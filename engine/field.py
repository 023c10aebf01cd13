"""The velocity one stage integrates: the model's (whole, in tiles, with dilated views) and the wrappers
that steer it (HiFlow alignment, the mask hold) or move the state (DemoFusion's skip residual).

Every piece is a `VelocityFn` (or a `Prepare`) made from the one below it, as ComfyUI's KSamplerX0Inpaint
wraps a denoiser: any sampler in `engine.sampler` runs any composition. `engine.guidance` has the maths.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from engine.backends.base import Conditioning, FlowBackend
from engine.guidance import (
    DILATED_VIEW_POWER,
    align_acceleration,
    align_direction,
    alpha_schedule,
    beta_schedule,
    cosine_decay,
    dilated_views,
    merge_dilated_views,
    skip_residual,
    velocity_from_x0,
)
from engine.pixels import gaussian_blur
from engine.sampler import Prepare, Step, VelocityFn, predicted_x0, renoise
from engine.tile_grid import TileGrid, Window, blend_weights, covered, dilate, windows_touching
from engine.tiled_model import tile_batches, tiled_velocity
from engine.work import Work

# Latent positions around the mask that the model still writes, so the pixel blend's soft edge falls on
# model output rather than on the reference's VAE round trip.
HOLD_MARGIN = 1


class Trajectory:
    """x0_hat at each sigma of one stage, as recorded; read back upsampled to the next stage's latent."""

    def __init__(self) -> None:
        self.sigmas: list[float] = []
        self.x0s: list[torch.Tensor] = []

    def record(self, sigma: float, x0_hat: torch.Tensor) -> None:
        self.sigmas.append(sigma)
        self.x0s.append(x0_hat.detach().to("cpu", torch.float32))

    def __len__(self) -> int:
        return len(self.sigmas)

    def at(self, sigma: float, size: tuple[int, int], device: torch.device) -> torch.Tensor:
        """The recorded x0_hat nearest `sigma`, bicubically upsampled to `size` (h, w) of latent."""
        index = min(range(len(self.sigmas)), key=lambda i: abs(self.sigmas[i] - sigma))
        x0 = self.x0s[index].to(device)
        return x0 if x0.shape[-2:] == size else F.interpolate(x0, size=size, mode="bicubic", align_corners=False)


class ModelVelocity:
    """The model's v(x, sigma) over a stage's latent: one call where it fits a tile, else fused from tiles
    (only those near `region` when there is one) with DemoFusion's dilated views blended in."""

    def __init__(self, backend: FlowBackend, cond: Conditioning, grid: TileGrid, latent: torch.Tensor, *,
                 sigma_start: float, region: torch.Tensor | None = None, outside: torch.Tensor | None = None,
                 dilated_views: float = 0.0, work: Work | None = None) -> None:
        self.backend, self.cond, self.work = backend, cond, work
        self.latent, self.sigma_start = latent, sigma_start  # the latent fills a tile preview's missing tiles
        self.outside = outside  # the velocity where no tile is computed (a mask dropped it); zeros if None
        # Called between tiles with a maker of x0_hat from the tiles done so far (elsewhere, the stage's clean
        # latent): a long tiled step can show a preview before it ends. The callee decides whether to make it.
        self.tile_preview: Callable[[Callable[[], torch.Tensor]], None] | None = None
        height, width = latent.shape[-2:]
        windows = grid.windows(height, width)
        if region is not None:  # tiles touching the region plus the tile overlap of context: the rest never runs
            windows = windows_touching(windows, dilate(region, HOLD_MARGIN + grid.overlap))
        self.whole = region is None and grid.fits(height, width)
        self.windows, self.batch = windows, grid.batch
        self.dilated_views = dilated_views
        # Dilated views of about a tile each (DemoFusion): only where the latent is more than a tile.
        self.stride = max(1, -(-max(height, width) // grid.tile)) if dilated_views > 0.0 else 1
        self.weights = [] if self.whole else blend_weights(height, width, windows, grid.overlap)

    @property
    def calls(self) -> int:
        """The model calls (tiles) one evaluation makes, dilated views aside: its units of work."""
        return 1 if self.whole else max(1, sum(1 for _ in tile_batches(self.windows, self.batch)))

    def __call__(self, x: torch.Tensor, sigma: float) -> torch.Tensor:
        if self.whole:
            v = self.backend.velocity(x, sigma, self.cond)
            if self.work is not None:
                self.work.unit()
            return v
        outside = torch.zeros_like(x) if self.outside is None else self.outside.clone()
        local = tiled_velocity(self.backend, x, sigma, self.cond, self.windows, self.weights, outside,
                               batch=self.batch, work=self.work, between=self._between(x, sigma))
        weight = self.dilated_views * cosine_decay(sigma, self.sigma_start, DILATED_VIEW_POWER)
        if weight <= 0.0 or self.stride < 2:
            return local
        return torch.lerp(local, self.global_velocity(x, sigma), weight)

    def _between(self, x: torch.Tensor, sigma: float) -> Callable[[torch.Tensor, Sequence[Window]], None] | None:
        if self.tile_preview is None:
            return None
        preview = self.tile_preview

        def between(out: torch.Tensor, done: Sequence[Window]) -> None:
            def x0_so_far() -> torch.Tensor:
                mask = covered(out.shape[-2], out.shape[-1], done).to(out.device)
                return torch.where(mask, predicted_x0(x, out, sigma), self.latent)
            preview(x0_so_far)
        return between

    def global_velocity(self, x: torch.Tensor, sigma: float) -> torch.Tensor:
        """DemoFusion's dilated sampling: the stride² interleaved sub-grids of x, each a whole-image view at
        about the tile's size, denoised and interleaved back. x is blurred first (Gaussian, 1 latent position)
        so each sub-grid is not an aliased sample of it; the latent is reflect-padded to whole views."""
        s, h, w = self.stride, x.shape[-2], x.shape[-1]
        step = s * self.backend.patch_size
        pad_h, pad_w = -h % step, -w % step
        padded = F.pad(gaussian_blur(x, 1.0, 2), (0, pad_w, 0, pad_h), mode="replicate")
        cond = self.cond.map_spatial(lambda t: F.pad(t, (0, pad_w, 0, pad_h), mode="replicate"))
        views = dilated_views(padded, s)
        outputs = []
        for start in range(0, len(views), self.batch):
            chunk = list(range(start, min(start + self.batch, len(views))))
            view_cond = cond.map_spatial(lambda t, chunk=chunk: torch.cat([t[..., i // s :: s, i % s :: s]
                                                                             for i in chunk]))
            batch = torch.cat([views[i] for i in chunk])
            outputs.extend(self.backend.velocity(batch, sigma, view_cond).split(x.shape[0]))
        return merge_dilated_views(outputs, s)[..., :h, :w]


class Aligned:
    """HiFlow's alignment around a velocity: x0_hat's low band pulled onto the reference trajectory's
    (direction, weight alpha(sigma)) and its change since the last higher sigma toward the reference's
    (acceleration, weight beta(sigma)); returns the velocity of the aligned x0_hat."""

    def __init__(self, velocity: VelocityFn, reference: Trajectory, *, sigma_start: float, direction: float,
                 acceleration: float) -> None:
        self.velocity, self.reference, self.sigma_start = velocity, reference, sigma_start
        self.direction, self.acceleration = direction, acceleration
        # (sigma, aligned x0_hat, reference x0_hat) of the last call, and of the last call at a higher sigma:
        # a second-order sampler evaluates twice at a sigma, and the change is taken across sigmas.
        self.last: tuple[float, torch.Tensor, torch.Tensor] | None = None
        self.previous: tuple[float, torch.Tensor, torch.Tensor] | None = None
        self.made: tuple[float, torch.Tensor] | None = None  # the last call's sigma and aligned x0_hat

    def __call__(self, x: torch.Tensor, sigma: float) -> torch.Tensor:
        x0_hat = predicted_x0(x, self.velocity(x, sigma), sigma)
        reference_x0 = self.reference.at(sigma, x.shape[-2:], x.device)
        if self.direction > 0.0:
            alpha = alpha_schedule(sigma, self.sigma_start, self.direction)
            x0_hat = align_direction(x0_hat, reference_x0, alpha=alpha)
        if self.acceleration > 0.0:
            if self.last is not None and self.last[0] > sigma:
                self.previous = self.last
            if self.previous is not None:
                _, previous_x0, previous_reference_x0 = self.previous
                beta = beta_schedule(sigma, self.sigma_start, self.acceleration)
                x0_hat = align_acceleration(x0_hat, previous_x0, reference_x0, previous_reference_x0, beta=beta)
            self.last = (sigma, x0_hat, reference_x0)
        self.made = (sigma, x0_hat)
        return velocity_from_x0(x, x0_hat, sigma)

    def denoised(self, step: Step) -> torch.Tensor:
        """x0_hat of `step` as this wrapper made it, where its last call was at the step's sigma (the sampler's
        x - sigma v from the returned velocity rounds differently); else the step's own."""
        if self.made is not None and self.made[0] == step.sigma:
            return self.made[1]
        return step.denoised


def held(velocity: VelocityFn, hold: torch.Tensor, reference_velocity: torch.Tensor) -> VelocityFn:
    """The mask hold (KSamplerX0Inpaint's idea): outside `hold` the velocity is the re-noised reference's own,
    eps - latent, so x stays on the reference's straight path there and the model's velocity counts inside only."""
    def velocity_held(x: torch.Tensor, sigma: float) -> torch.Tensor:
        return torch.where(hold, velocity(x, sigma), reference_velocity)
    return velocity_held


def on_reference_path(hold: torch.Tensor, latent: torch.Tensor, noise: torch.Tensor) -> Prepare:
    """For a stochastic sampler with a mask: outside `hold`, x is put back on the reference's path before each
    step (the fresh noise a step mixes in would otherwise leave it there)."""
    def prepare(x: torch.Tensor, sigma: float) -> torch.Tensor:
        return torch.where(hold, x, renoise(latent, noise, sigma))
    return prepare


def skip_residual_move(latent: torch.Tensor, noise: torch.Tensor, *, sigma_start: float, weight: float) -> Prepare:
    """DemoFusion's skip residual: before each step x is mixed with the re-noised reference, weight
    `weight`·((1 + cos πt)/2)³ over the stage. It moves the state, not its velocity, so it is a `Prepare`."""
    def prepare(x: torch.Tensor, sigma: float) -> torch.Tensor:
        return skip_residual(x, renoise(latent, noise, sigma), weight * cosine_decay(sigma, sigma_start))
    return prepare


def chain(*prepares: Prepare | None) -> Prepare | None:
    """The prepares that are given, applied in order; None when there are none."""
    present = [p for p in prepares if p is not None]
    if not present:
        return None

    def prepare(x: torch.Tensor, sigma: float) -> torch.Tensor:
        for p in present:
            x = p(x, sigma)
        return x
    return prepare
