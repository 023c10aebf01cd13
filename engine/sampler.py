"""Flow-ODE samplers: each owns only the loop `(velocity, x, sigmas, *, on_step, cancel) -> x`.

A sampler knows nothing of tiles, masks or structure guidance: those are wrappers around `velocity`
(engine.field). What a step leaves behind (x0_hat for a preview or HiFlow's reference trajectory) goes to
`on_step` as a `Step`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import pairwise

import torch

from engine.progress import CancelToken
from engine.settings import SAMPLERS  # noqa: F401 - what a job can choose; re-exported with the samplers

# velocity(x_sigma, sigma) -> v, with v ≈ eps - x0 (diffusers' flow-matching convention).
VelocityFn = Callable[[torch.Tensor, float], torch.Tensor]
# prepare(x, sigma) -> the state a step starts from (DemoFusion's skip residual moves x itself, not its velocity).
Prepare = Callable[[torch.Tensor, float], torch.Tensor]


@dataclass(frozen=True)
class Step:
    """One finished step: from `x` at `sigma` (with the velocity `v` evaluated there) to `x_next` at `sigma_next`."""

    index: int
    sigma: float
    sigma_next: float
    x: torch.Tensor
    v: torch.Tensor
    x_next: torch.Tensor

    @property
    def denoised(self) -> torch.Tensor:
        """x0_hat at `sigma`: what a preview shows and what HiFlow's reference trajectory records."""
        return predicted_x0(self.x, self.v, self.sigma)


StepCallback = Callable[[Step], None]


def renoise(x0: torch.Tensor, noise: torch.Tensor, sigma: float) -> torch.Tensor:
    """Forward flow interpolation x_sigma = (1 - sigma) x0 + sigma eps (rectified flow)."""
    if sigma == 0.0:
        return x0.clone()
    return (1.0 - sigma) * x0 + sigma * noise


def predicted_x0(x: torch.Tensor, v: torch.Tensor, sigma: float) -> torch.Tensor:
    """Clean sample implied by a velocity: x0_hat = x_sigma - sigma v."""
    return x - sigma * v


def model_calls(sampler: str, sigma_next: float) -> int:
    """Velocity evaluations one step of `sampler` makes: Heun's corrector is skipped on the step to sigma 0."""
    return 2 if sampler == "heun" and sigma_next > 0.0 else 1


def euler(velocity: VelocityFn, x: torch.Tensor, sigmas: Sequence[float], *, prepare: Prepare | None = None,
          on_step: StepCallback | None = None, cancel: CancelToken | None = None) -> torch.Tensor:
    """Deterministic Euler integration of the flow ODE along `sigmas` (first entry = current sigma)."""
    for index, (sigma, sigma_next) in enumerate(pairwise(float(s) for s in sigmas)):
        start = _start(x, sigma, prepare, cancel)
        v = velocity(start, sigma)
        x_next = start + (sigma_next - sigma) * v
        if on_step is not None:
            on_step(Step(index, sigma, sigma_next, start, v, x_next))
        x = x_next if start is x else _land(x, x_next, sigma, sigma_next)
    return x


def euler_ancestral(velocity: VelocityFn, x: torch.Tensor, sigmas: Sequence[float], *, eta: float,
                    generator: torch.Generator, prepare: Prepare | None = None, on_step: StepCallback | None = None,
                    cancel: CancelToken | None = None) -> torch.Tensor:
    """Euler with a share `eta` of the noise renewed at every step but the last (k-diffusion's
    `sample_euler_ancestral`, on the straight path: see `ancestral_step`); fresh noise from `generator` (CPU)."""
    for index, (sigma, sigma_next) in enumerate(pairwise(float(s) for s in sigmas)):
        start = _start(x, sigma, prepare, cancel)
        v = velocity(start, sigma)
        renew = sigma_next > 0.0 and eta > 0.0
        if renew:
            fresh = torch.randn(x.shape, generator=generator, dtype=torch.float32).to(x.device)
            x_next = ancestral_step(start, v, sigma, sigma_next, eta, fresh)
        else:
            x_next = start + (sigma_next - sigma) * v
        if on_step is not None:
            on_step(Step(index, sigma, sigma_next, start, v, x_next))
        x = x_next if start is x and not renew else _land(x, x_next, sigma, sigma_next)
    return x


def heun(velocity: VelocityFn, x: torch.Tensor, sigmas: Sequence[float], *, prepare: Prepare | None = None,
         on_step: StepCallback | None = None, cancel: CancelToken | None = None) -> torch.Tensor:
    """Heun's second-order method (Karras et al. 2022, algorithm 1): the Euler step, then the step again with
    the mean of the velocities at both ends; the step to sigma 0 stays Euler (no velocity at sigma 0)."""
    for index, (sigma, sigma_next) in enumerate(pairwise(float(s) for s in sigmas)):
        x = _start(x, sigma, prepare, cancel)
        v = velocity(x, sigma)
        x_next = x + (sigma_next - sigma) * v
        if sigma_next > 0.0:
            if cancel is not None:
                cancel.raise_if_cancelled()
            x_next = x + (sigma_next - sigma) * ((v + velocity(x_next, sigma_next)) / 2.0)
        if on_step is not None:
            on_step(Step(index, sigma, sigma_next, x, v, x_next))
        x = x_next
    return x


def _land(x: torch.Tensor, x_next: torch.Tensor, sigma: float, sigma_next: float) -> torch.Tensor:
    """`x_next`, reached as an Euler step from `x` (the state before any `prepare`) with the velocity that lands
    there. Mathematically x_next; the arithmetic is the engine's before issue 17 (its field returned that
    velocity and the loop added it), kept so the recorded outputs (tests/golden) stay byte for byte."""
    return x + (sigma_next - sigma) * ((x_next - x) / (sigma_next - sigma))


def _start(x: torch.Tensor, sigma: float, prepare: Prepare | None, cancel: CancelToken | None) -> torch.Tensor:
    if cancel is not None:
        cancel.raise_if_cancelled()
    return x if prepare is None else prepare(x, sigma)


def ancestral_step(x: torch.Tensor, v: torch.Tensor, sigma: float, sigma_next: float, eta: float,
                   noise: torch.Tensor) -> torch.Tensor:
    """One rectified-flow step that renews a share of the noise: (1 - s') x0_hat + s' (sqrt(1 - eta²) eps_hat + eta n).

    x0_hat = x - sigma v and eps_hat = x + (1 - sigma) v are the clean sample and noise the velocity
    implies; the deterministic Euler step x + (sigma' - sigma) v is exactly (1 - s') x0_hat + s' eps_hat.
    Mixing fresh unit noise `n` into eps_hat with weights whose squares sum to one keeps the noise level
    sigma' (the DDIM-eta idea on the straight path). eta = 0 returns the Euler step bit for bit; eta = 1
    discards eps_hat (ancestral); at sigma' = 0 every eta lands on x0_hat.
    """
    for name, other in (("v", v), ("noise", noise)):
        if other.shape != x.shape:
            raise ValueError(f"{name} must have the latent's shape {tuple(x.shape)}, got {tuple(other.shape)}")
    if not 0.0 <= eta <= 1.0:
        raise ValueError(f"eta must be within [0, 1], got {eta}")
    if eta == 0.0:
        return x + (sigma_next - sigma) * v  # the same expression as `euler`
    x0_hat = predicted_x0(x, v, sigma)
    eps_hat = x + (1.0 - sigma) * v
    mixed = math.sqrt(1.0 - eta * eta) * eps_hat + eta * noise.to(x.dtype)
    return (1.0 - sigma_next) * x0_hat + sigma_next * mixed
