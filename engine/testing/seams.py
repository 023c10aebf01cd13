"""How much a tiled result's error concentrates along the tile edges: the seam measure of issue 21."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from engine.tile_grid import Window


def border_ratio(error: torch.Tensor, windows: Sequence[Window], scale: int = 1) -> float:
    """Mean of an (H, W) error map within `scale` positions of any inner tile edge (windows in units `scale`
    times coarser), over its mean everywhere else: 1 means the edges are as good as the inside, no seam."""
    height, width = error.shape
    border = torch.zeros(height, width, dtype=torch.bool)
    for window in windows:
        for edge in (window.top * scale, (window.top + window.height) * scale):
            if 0 < edge < height:
                border[max(0, edge - scale):edge + scale, :] = True
        for edge in (window.left * scale, (window.left + window.width) * scale):
            if 0 < edge < width:
                border[:, max(0, edge - scale):edge + scale] = True
    return float(error[border].mean() / error[~border].mean())


def tone_step(error: torch.Tensor, windows: Sequence[Window], scale: int = 1) -> float:
    """Mean absolute difference of the mean signed (C, H, W) error between neighbouring tiles, each taken over
    the positions whose nearest tile centre is its own, over the mean absolute error: a tile-tone step across
    borders (0 = none)."""
    height, width = error.shape[-2:]
    rows, cols = torch.meshgrid(torch.arange(height) + 0.5, torch.arange(width) + 0.5, indexing="ij")
    centres = torch.tensor([((w.top + w.height / 2) * scale, (w.left + w.width / 2) * scale) for w in windows])
    distance = torch.stack([torch.maximum((rows - r).abs(), (cols - c).abs()) for r, c in centres.tolist()])
    nearest = distance.argmin(0)
    tones = [error[:, nearest == i].mean(dim=1) for i in range(len(windows))]
    steps = [(tones[i] - tones[j]).abs().mean() for i, a in enumerate(windows) for j, b in enumerate(windows)
             if i < j and _neighbours(a, b)]
    return float(torch.stack(steps).mean() / error.abs().mean())


def _neighbours(a: Window, b: Window) -> bool:
    """Side by side or one above the other, overlapping (not only corner to corner)."""
    rows = a.top < b.top + b.height and b.top < a.top + a.height
    cols = a.left < b.left + b.width and b.left < a.left + a.width
    return (rows and cols) and (a.top == b.top or a.left == b.left)
