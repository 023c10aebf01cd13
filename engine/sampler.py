"""Flow-ODE samplers: each owns only the loop `(velocity_fn, x, sigmas) -> x`."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from engine.progress import CancelToken

# velocity_fn(x_sigma, sigma) -> v, with v ≈ eps - x0 (diffusers' flow-matching convention).
VelocityFn = Callable[[torch.Tensor, float], torch.Tensor]
# on_step(step_index, sigma_reached, x_after_step)
StepCallback = Callable[[int, float, torch.Tensor], None]


def renoise(x0: torch.Tensor, noise: torch.Tensor, sigma: float) -> torch.Tensor:
    """Forward flow interpolation x_sigma = (1 - sigma) x0 + sigma eps (rectified flow)."""
    if sigma == 0.0:
        return x0.clone()
    return (1.0 - sigma) * x0 + sigma * noise


def predicted_x0(x: torch.Tensor, v: torch.Tensor, sigma: float) -> torch.Tensor:
    """Clean sample implied by a velocity: x0_hat = x_sigma - sigma v."""
    return x - sigma * v


def euler(
    velocity_fn: VelocityFn,
    x: torch.Tensor,
    sigmas: Sequence[float],
    *,
    on_step: StepCallback | None = None,
    cancel: CancelToken | None = None,
) -> torch.Tensor:
    """Deterministic Euler integration of the flow ODE along `sigmas` (first entry = current sigma)."""
    for i in range(len(sigmas) - 1):
        if cancel is not None:
            cancel.raise_if_cancelled()
        sigma, sigma_next = float(sigmas[i]), float(sigmas[i + 1])
        x = x + (sigma_next - sigma) * velocity_fn(x, sigma)
        if on_step is not None:
            on_step(i, sigma_next, x)
    return x
