"""Stage plan: split a scale factor into progressive stages of at most 2x each (DemoFusion, HiFlow)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from engine.schedule import remaining_sigmas

if TYPE_CHECKING:  # engine.backends.base imports engine.settings, which imports this module
    from engine.backends.base import FlowBackend

from plugin.uprez_client.protocol import (  # noqa: F401 - the engine's names for them
    MAX_SCALE,
    output_size,
    round_half_up,
    scale_problem,
)

MAX_STAGE_FACTOR = 2.0


def check_scale(scale: float) -> float:
    """A user scale factor as a float; ValueError with the settings' message (protocol.scale_problem)."""
    problem = scale_problem(scale)
    if problem is not None:
        raise ValueError(problem)
    return float(scale)


def stage_factors(scale: float) -> list[float]:
    """Equal geometric split of `scale` into the fewest stages of at most 2x (4x = 2x·2x, 3x = √3·√3)."""
    scale = check_scale(scale)
    count = max(1, math.ceil(math.log(scale, MAX_STAGE_FACTOR) - 1e-9))
    return [scale ** (1.0 / count)] * count




def stage_sizes(width: int, height: int, scale: float, final: tuple[int, int] | None = None) -> list[tuple[int, int]]:
    """Pixel size after each stage; the last is exactly `final` (default `output_size`), no stage beyond 2x.

    `final` lets a crop of a bigger image land on the pixel box its upscale occupies there, which can be a
    pixel off the crop's own rounded size.
    """
    factors = stage_factors(scale)
    sizes: list[tuple[int, int]] = []
    w, h, total = width, height, 1.0
    for i, factor in enumerate(factors):
        total *= factor
        if i == len(factors) - 1:
            nw, nh = final or output_size(width, height, scale)
        else:
            nw, nh = round_half_up(width * total), round_half_up(height * total)
        # Rounding small sides can overshoot 2x; clamping keeps every stage a gentle step.
        nw, nh = min(nw, 2 * w), min(nh, 2 * h)
        sizes.append((nw, nh))
        w, h = nw, nh
    return sizes


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
    from engine.guidance import scale_aware_sigma  # torch; this module is imported by the settings

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
