"""Stage plan: split a scale factor into progressive stages of at most 2x each (DemoFusion, HiFlow)."""

from __future__ import annotations

import math

from plugin.uprez_client.protocol import MAX_SCALE, output_size, round_half_up  # noqa: F401 - the engine's names for them

MAX_STAGE_FACTOR = 2.0


def check_scale(scale: float) -> float:
    """Validate a user scale factor and return it as a float."""
    if not isinstance(scale, (int, float)) or isinstance(scale, bool) or not math.isfinite(scale):
        raise ValueError(f"scale must be a number such as 2 or 1.5, got {scale!r}")
    if scale <= 1.0:
        raise ValueError(f"scale must be > 1 (this is an upscaler), got {scale}")
    if scale > MAX_SCALE:
        raise ValueError(f"scale must be at most {MAX_SCALE:g}, got {scale}; run the result again for more")
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
