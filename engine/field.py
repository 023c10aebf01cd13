"""The velocity field one stage integrates: the model (whole or in tiles), structure guidance, mask hold.

`engine.guidance` has the maths; this module decides when each piece applies and keeps the state a
stage needs: the re-noised reference, the previous step's x0_hat, and the reference trajectory (the
x0_hat of every step of the stage before, upsampled), which the next stage reads.
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
    stochastic_step,
    velocity_from_x0,
)
from engine.pixels import gaussian_blur
from engine.sampler import predicted_x0, renoise
from engine.settings import StructureGuidance
from engine.tiled import TileGrid, tile_batches, tiled_velocity
from engine.tiling import Window, blend_weights, covered, dilate, windows_touching
from engine.work import Work

# Latent positions around the mask that the model still writes, so the pixel blend's soft edge falls on
# model output rather than on the reference's VAE round trip.
HOLD_MARGIN = 1


OFF = StructureGuidance()  # the plain loop


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


class StageField:
    """v(x, sigma) for one stage: the model's velocity (in tiles where the latent is large), steered by
    `guidance` toward `reference`, and held to the re-noised reference outside a mask's region."""

    def __init__(self, backend: FlowBackend, cond: Conditioning, grid: TileGrid, latent: torch.Tensor,
                 noise: torch.Tensor, sigmas: tuple[float, ...], *, region: torch.Tensor | None = None,
                 guidance: StructureGuidance = OFF, reference: Trajectory | None = None, keep_trajectory: bool = False,
                 generator: torch.Generator | None = None, work: Work | None = None, work_key: str = "") -> None:
        self.backend, self.cond, self.guidance = backend, cond, guidance
        # Step n is `work`'s phase "<work_key>:step<n>"; each model call (a tile, or the whole) one of its units.
        self.work, self.work_key = work, work_key
        # Called between tiles with a maker of x0_hat from the tiles done so far (elsewhere, the stage's clean
        # latent): a long tiled step can show a preview before it ends. The callee decides whether to make it.
        self.tile_preview: Callable[[Callable[[], torch.Tensor]], None] | None = None
        self.step_of = {sigma: index + 1 for index, sigma in enumerate(sigmas[:-1])}
        self.latent, self.noise = latent, noise
        self.sigma_start, self.next_sigma = sigmas[0], dict(zip(sigmas[:-1], sigmas[1:], strict=True))
        self.reference = reference if guidance.uses_reference and reference is not None and len(reference) else None
        self.generator = generator
        self.trajectory = Trajectory() if keep_trajectory else None  # for the next stage's reference
        # (guided x0_hat, reference x0_hat) of the step before, for acceleration alignment
        self.previous: tuple[torch.Tensor, torch.Tensor | None] | None = None
        height, width = latent.shape[-2:]
        windows = grid.windows(height, width)
        self.hold = self.reference_velocity = None
        if region is not None:
            self.hold = dilate(region, HOLD_MARGIN).to(latent.device)
            self.reference_velocity = noise - latent  # eps - latent: what keeps x on the reference's path
            # Tiles touching the region plus the tile overlap of context: the rest is never computed.
            windows = windows_touching(windows, dilate(region, HOLD_MARGIN + grid.overlap))
        self.whole = self.hold is None and grid.fits(height, width)
        self.windows, self.batch = windows, grid.batch
        # Dilated views of about a tile each (DemoFusion): only where the latent is more than a tile.
        self.stride = max(1, -(-max(height, width) // grid.tile)) if guidance.dilated_views > 0.0 else 1
        self.weights = [] if self.whole else blend_weights(height, width, windows, grid.overlap)

    @property
    def calls_per_step(self) -> int:
        """The tiles' model calls one step makes (dilated views aside): its units of work."""
        return 1 if self.whole else max(1, sum(1 for _ in tile_batches(self.windows, self.batch)))

    def reference_x(self, sigma: float) -> torch.Tensor:
        """The re-noised reference on its straight path: (1 - sigma) latent + sigma eps."""
        return renoise(self.latent, self.noise, sigma)

    def model(self, x: torch.Tensor, sigma: float) -> torch.Tensor:
        if self.whole:
            v = self.backend.velocity(x, sigma, self.cond)
            if self.work is not None:
                self.work.unit()
            return v
        # Tiles cover everything unless a mask dropped some; there the reference's own velocity holds x.
        outside = torch.zeros_like(x) if self.reference_velocity is None else self.reference_velocity.clone()
        local = tiled_velocity(self.backend, x, sigma, self.cond, self.windows, self.weights, outside,
                               batch=self.batch, work=self.work, between=self._between(x, sigma))
        weight = self.guidance.dilated_views * cosine_decay(sigma, self.sigma_start, DILATED_VIEW_POWER)
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

    def __call__(self, x: torch.Tensor, sigma: float) -> torch.Tensor:
        g, sigma_next = self.guidance, self.next_sigma[sigma]
        if self.work is not None:
            self.work.begin(f"{self.work_key}:step{self.step_of[sigma]}", self.calls_per_step)
        x_in = x
        if g.skip_residual > 0.0:
            x_in = skip_residual(x, self.reference_x(sigma), g.skip_residual * cosine_decay(sigma, self.sigma_start))
        v = self.model(x_in, sigma)
        x0_hat = predicted_x0(x_in, v, sigma)
        reference_x0 = None
        if self.reference is not None:
            size, device = x.shape[-2:], x.device
            reference_x0 = self.reference.at(sigma, size, device)
            if g.direction_alignment > 0.0:
                alpha = alpha_schedule(sigma, self.sigma_start, g.direction_alignment)
                x0_hat = align_direction(x0_hat, reference_x0, alpha=alpha)
            if g.acceleration_alignment > 0.0 and self.previous is not None:
                previous_x0, previous_reference_x0 = self.previous
                beta = beta_schedule(sigma, self.sigma_start, g.acceleration_alignment)
                x0_hat = align_acceleration(x0_hat, previous_x0, reference_x0, previous_reference_x0, beta=beta)
            v = velocity_from_x0(x_in, x0_hat, sigma)
        if g.acceleration_alignment > 0.0:
            self.previous = (x0_hat, reference_x0)
        if self.trajectory is not None:
            self.trajectory.record(sigma, x0_hat)
        stochastic = g.stochastic > 0.0 and sigma_next > 0.0
        if x_in is x and not stochastic:
            v_step = v  # nothing moved x: exactly the plain loop's step
        else:
            if stochastic:
                fresh = torch.randn(x.shape, generator=self.generator, dtype=torch.float32).to(x.device)
                x_next = stochastic_step(x_in, v, sigma, sigma_next, g.stochastic, fresh)
            else:
                x_next = x_in + (sigma_next - sigma) * v
            # The sampler steps from x, not x_in: this velocity lands where the guided step lands.
            v_step = (x_next - x) / (sigma_next - sigma)
        if self.hold is not None:
            v_step = torch.where(self.hold, v_step, self.reference_velocity)
        return v_step
