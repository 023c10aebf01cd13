"""Where an input's JPEG block grid lies, so the built-in network knows where to smooth (issue 15).

A convolutional network sees the same weights at every position: it cannot tell a block border from an
edge of the photo one pixel away, so v1 sharpened the grid and stop 14's v2 only weakened it. These pure
functions find the grid in a stage's upsampled input from the image itself (the steps across every 16th
column and row of a 2x upscale of 8x8 blocks stand out against the other steps of the same parity), which
works for a crop, a selection or a tile whose origin is not on the grid; and give the network the position
inside the block as features. No grid found (a clean photo, a second x2 stage, a stage that is not x2): no
features, and the network works from the content alone, as it was also trained to.
"""

from __future__ import annotations

import math

import torch

PERIOD = 16  # an 8-pixel JPEG block of the stage's input, in the pixels of its 2x upscale
# Border steps over the other steps of the same parity, in both directions. On the 12 eval and validation
# photos at 512 px: clean 1.01-1.12 (none passes both), JPEG-60 1.14-5.4 (all found), JPEG-90 found in 6.
MIN_STRENGTH = 1.12
FEATURES = 4  # cos and sin of the position in the block, across and down
NO_GRID = 255  # a `positions` value: this image has no grid (a training batch mixes both kinds)


def _profile(steps: torch.Tensor) -> torch.Tensor:
    """Mean step per position modulo PERIOD; index k holds the steps between pixels k - 1 and k."""
    count = steps.shape[-1]
    positions = (torch.arange(count, device=steps.device) + 1) % PERIOD
    sums = torch.zeros(PERIOD, dtype=torch.float64, device=steps.device).index_add_(0, positions, steps.double())
    counts = torch.bincount(positions, minlength=PERIOD).clamp(min=1)
    return sums / counts


def _phase(profile: torch.Tensor) -> tuple[int, float]:
    """The strongest position and how it stands out against the other positions of its parity (a 2x
    upscaler's own two-pixel pattern differs between even and odd positions)."""
    border = int(torch.argmax(profile))
    same = [k for k in range(PERIOD) if k % 2 == border % 2 and k != border]
    return border, float(profile[border] / profile[same].mean().clamp(min=1e-9))


def detect(image: torch.Tensor) -> tuple[int, int] | None:
    """The grid's (row, column) phase in `image` (B, 3, H, W), [-1, 1], a 2x upscale: a border lies
    between pixels k - 1 and k wherever k % PERIOD equals the phase. None where either direction has no
    grid that stands out by MIN_STRENGTH (or the image is under two periods)."""
    if min(image.shape[-2:]) < 2 * PERIOD:
        return None
    luma = (image[:, :3] * torch.tensor([0.299, 0.587, 0.114], device=image.device)[:, None, None]).sum(1)
    across_columns = (luma[..., 1:] - luma[..., :-1]).abs().mean(dim=(0, 1))
    across_rows = (luma[..., 1:, :] - luma[..., :-1, :]).abs().mean(dim=(0, 2))
    column, column_strength = _phase(_profile(across_columns))
    row, row_strength = _phase(_profile(across_rows))
    if min(column_strength, row_strength) < MIN_STRENGTH:
        return None
    return row, column


def positions(height: int, width: int, phase: tuple[int, int] | None) -> torch.Tensor:
    """(1, 2, H, W) uint8: each pixel's row and column inside its block (0 on a block's first pixel), all
    NO_GRID for phase None. Kept as a spatial input of the stage so tiles and dilated views get their own
    part of it."""
    if phase is None:
        return torch.full((1, 2, height, width), NO_GRID, dtype=torch.uint8)
    rows = (torch.arange(height) - phase[0]) % PERIOD
    columns = (torch.arange(width) - phase[1]) % PERIOD
    grid = torch.stack([rows[:, None].expand(height, width), columns[None, :].expand(height, width)])
    return grid.to(torch.uint8)[None]


def features(grid: torch.Tensor | None, like: torch.Tensor, patch: int) -> torch.Tensor:
    """The network's block-position input at its working resolution (B, FEATURES, H / patch, W / patch),
    from `positions` (B, 2, H, W); zeros where `grid` is None or NO_GRID. `like` gives batch, size, dtype."""
    batch, _, height, width = like.shape
    if grid is None:
        return like.new_zeros(batch, FEATURES, height // patch, width // patch)
    first = grid[..., ::patch, ::patch]
    centre = first.to(like.dtype) + (patch - 1) / 2  # a patch's first pixel, then its middle
    angle = centre * (2 * math.pi / PERIOD)
    known = (first[:, :1] != NO_GRID).to(like.dtype)
    return (torch.cat([angle.cos(), angle.sin()], dim=1) * known).expand(batch, -1, -1, -1)
