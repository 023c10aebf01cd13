"""Tile geometry (DESIGN §The algorithm 5): where the tiles go and how their outputs are fused.

Pure functions on sizes and plain tensors; `engine.tiled_model` runs the model and the VAE over the tiles, and
a job's `TileGrid` says how big tiles are (in latent positions) and how much neighbours overlap. Tiles overlap;
each tile's output is weighted by a raised-cosine ramp across the sides it shares with a neighbour, and the
weights of all tiles are normalised to sum to one at every position, so the fused field is a convex
combination of the tiles' fields and has no seams.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

if TYPE_CHECKING:  # engine.backends.base imports Window from here
    from engine.backends.base import FlowBackend


@dataclass(frozen=True)
class Window:
    """A tile: rows [top, top + height) and columns [left, left + width) of a (..., H, W) tensor."""

    top: int
    left: int
    height: int
    width: int

    @property
    def slices(self) -> tuple[slice, slice]:
        return slice(self.top, self.top + self.height), slice(self.left, self.left + self.width)


@dataclass(frozen=True)
class TileGrid:
    """Tile side and overlap in latent positions, both multiples of the model's patch size, and how many
    tiles go through the model in one call; the VAE's tiles may overlap more (`vae_overlap`, None: as much)."""

    tile: int
    overlap: int
    multiple: int = 1
    batch: int = 1
    vae_overlap: int | None = None
    # The encoder's GroupNorm statistics pass runs on the fewest tiles that cover the image, not on all: as few
    # tone steps between tiles, at 4/9 of the cost at 2x the tile. The decoder's did not keep them (+2 to +36 %
    # on the test VAE, bench/seams.py), so it still runs on every tile.
    statistics_cover: bool = False

    @classmethod
    def for_backend(cls, backend: FlowBackend, tile_px: int | None = None, overlap_px: int | None = None,
                    batch: int = 1) -> TileGrid:
        """Pixel sizes (None: the model's) in whole patches: the tile rounded down, the overlap up but kept
        to half a tile. Without an overlap given, the VAE's tiles overlap by a quarter of the model's tile."""
        tile_px = tile_px or backend.default_tile_size
        patch, step = backend.patch_size, backend.latent_multiple
        tile = max(1, tile_px // step) * patch

        def whole(pixels: int) -> int:
            return min(-(-pixels // step), tile // patch // 2) * patch

        if overlap_px is not None:
            return cls(tile, whole(overlap_px), patch, batch, statistics_cover=True)
        return cls(tile, whole(backend.default_tile_overlap), patch, batch, whole(backend.default_tile_size // 4),
                   statistics_cover=True)

    def windows(self, height: int, width: int) -> list[Window]:
        """The model's tiles: spread evenly, shrunk to the overlap they need (engine.tile_grid.spread_windows)."""
        return spread_windows(height, width, self.tile, self.overlap, self.multiple)

    @property
    def vae_ramp(self) -> int:
        return self.overlap if self.vae_overlap is None else self.vae_overlap

    def vae_windows(self, height: int, width: int) -> list[Window]:
        """The VAE's tiles, all of the full size, the last flush with the end: shrunk as the model's are, their
        tone steps doubled (bench/seams.py)."""
        return tile_windows(height, width, self.tile, self.vae_ramp, self.multiple)

    def fits(self, height: int, width: int) -> bool:
        """Whether a latent this size is one tile: then the model runs on it whole."""
        return height <= self.tile and width <= self.tile


def tile_starts(length: int, tile: int, overlap: int, multiple: int = 1) -> list[int]:
    """Start offsets of tiles of size `tile` covering [0, length), neighbours sharing at least `overlap`.

    Starts are multiples of `multiple` (a model's patch size) as long as `length`, `tile` and `overlap`
    are; the last tile ends flush with `length`. A length that fits one tile gets one tile of that length.
    """
    if length <= tile:
        return [0]
    if not 0 <= overlap < tile:
        raise ValueError(f"overlap must be at least 0 and less than the tile size {tile}, got {overlap}")
    stride = max(multiple, (tile - overlap) // multiple * multiple)
    count = math.ceil((length - tile) / stride) + 1
    return [min(i * stride, length - tile) for i in range(count)]


def tile_windows(height: int, width: int, tile: int, overlap: int, multiple: int = 1) -> list[Window]:
    """Row-major tiles covering a height x width grid."""
    tile_h, tile_w = min(tile, height), min(tile, width)
    return [Window(top, left, tile_h, tile_w)
            for top in tile_starts(height, tile, overlap, multiple)
            for left in tile_starts(width, tile, overlap, multiple)]


def _ramp(length: int, ramp: int, rise: bool, fall: bool) -> torch.Tensor:
    """1-D weights: raised-cosine rise and fall of `ramp` samples at the flagged ends, 1 between.

    Values are strictly positive (the cosine is sampled at half-sample offsets), so every position a tile
    covers carries weight and normalisation never divides by zero.
    """
    weights = torch.ones(length, dtype=torch.float64)
    ramp = min(ramp, length // 2)
    if ramp > 0:
        edge = 0.5 - 0.5 * torch.cos(math.pi * (torch.arange(ramp, dtype=torch.float64) + 0.5) / ramp)
        if rise:
            weights[:ramp] = edge
        if fall:
            weights[length - ramp:] = edge.flip(0)
    return weights


class SeparableWeights(Sequence[torch.Tensor]):
    """Blend weights of a full grid of tiles, made on demand: each is an outer product of a row and a
    column profile, so the whole set costs a few vectors instead of one image-sized tensor per tile."""

    def __init__(self, windows: Sequence[Window], rows: dict[tuple[int, int], torch.Tensor],
                 cols: dict[tuple[int, int], torch.Tensor]) -> None:
        self.windows, self.rows, self.cols = list(windows), rows, cols

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, index):  # noqa: ANN001, ANN204 - Sequence protocol (int or slice)
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        w = self.windows[index]
        return self.rows[w.top, w.height][:, None] * self.cols[w.left, w.width][None, :]


def _profiles(length: int, spans: set[tuple[int, int]], ramp: int) -> dict[tuple[int, int], torch.Tensor]:
    """Per (start, size) span along one axis: its ramp divided by the sum of all spans' ramps."""
    raw = {(start, size): _ramp(size, ramp, start > 0, start + size < length) for start, size in spans}
    total = torch.zeros(length, dtype=torch.float64)
    for (start, size), values in raw.items():
        total[start : start + size] += values
    return {(start, size): (values / total[start : start + size]).float() for (start, size), values in raw.items()}


def blend_weights(height: int, width: int, windows: Sequence[Window], ramp: int) -> Sequence[torch.Tensor]:
    """Per-window (height, width) float32 weights that sum to one wherever any window covers.

    A side of a tile ramps only where it lies inside the grid (a neighbour takes over there); sides on the
    grid's border keep full weight. Positions no window covers get no weight from any window. A full grid
    (every row span with every column span, as `tile_windows` makes) gets separable weights computed on
    demand; any other set (the tiles near a mask) is normalised densely.
    """
    row_spans = {(w.top, w.height) for w in windows}
    col_spans = {(w.left, w.width) for w in windows}
    if len(windows) == len(row_spans) * len(col_spans) == len(set(windows)):
        return SeparableWeights(windows, _profiles(height, row_spans, ramp), _profiles(width, col_spans, ramp))
    raw = []
    total = torch.zeros(height, width)
    for w in windows:
        rows = _ramp(w.height, ramp, w.top > 0, w.top + w.height < height).float()
        cols = _ramp(w.width, ramp, w.left > 0, w.left + w.width < width).float()
        weight = rows[:, None] * cols[None, :]
        raw.append(weight)
        total[w.slices] += weight
    return [weight / total[w.slices] for w, weight in zip(windows, raw, strict=True)]


def covered(height: int, width: int, windows: Sequence[Window]) -> torch.Tensor:
    """Boolean (height, width): positions inside at least one window."""
    mask = torch.zeros(height, width, dtype=torch.bool)
    for w in windows:
        mask[w.slices] = True
    return mask


def windows_touching(windows: Sequence[Window], region: torch.Tensor) -> list[Window]:
    """The windows that contain at least one True position of the boolean (H, W) `region`."""
    return [w for w in windows if bool(region[w.slices].any())]


def dilate(region: torch.Tensor, radius: int) -> torch.Tensor:
    """Boolean (H, W) grown by `radius` positions in every direction (a square structuring element)."""
    if radius <= 0:
        return region.clone()
    grown = F.max_pool2d(region[None, None].float(), 2 * radius + 1, stride=1, padding=radius)
    return grown[0, 0] > 0


def fuse_tiles(values: Iterable[torch.Tensor], windows: Sequence[Window], weights: Sequence[torch.Tensor],
               out: torch.Tensor) -> torch.Tensor:
    """Write sum_i weight_i * value_i over each window into `out` (..., H, W), in place, and return it.

    `values` yields one (..., h_i, w_i) tensor per window, in order, so a caller can compute tiles lazily and
    hold one at a time. Positions any window covers are replaced; the rest of `out` keeps its values.
    """
    out[..., covered(out.shape[-2], out.shape[-1], windows)] = 0.0
    for window, weight, value in zip(windows, weights, values, strict=True):
        out[(..., *window.slices)] += weight.to(out.device, out.dtype) * value.to(out.dtype)
    return out


def scaled(window: Window, factor: int) -> Window:
    """The same window on a grid `factor` times finer (latent -> pixels)."""
    return Window(window.top * factor, window.left * factor, window.height * factor, window.width * factor)


def spread_windows(height: int, width: int, tile: int, overlap: int, multiple: int = 1) -> list[Window]:
    """Row-major tiles covering a height x width grid, as few as `tile_windows`'s but all of one size, the
    smallest that still gives neighbours `overlap`, spread evenly: less area computed twice (issue 21).

    `tile_windows` keeps every tile at `tile` and puts the last one flush with the end: a 1200-wide image in
    1088-wide tiles is computed over 2176 columns. Here the same two tiles are 632 wide (1264 columns).
    """
    rows, tile_h = _spread(height, tile, overlap, multiple)
    cols, tile_w = _spread(width, tile, overlap, multiple)
    return [Window(top, left, tile_h, tile_w) for top in rows for left in cols]


def _spread(length: int, tile: int, overlap: int, multiple: int) -> tuple[list[int], int]:
    """Starts and size of `tile_starts`'s number of tiles along one axis, shrunk to the overlap they need."""
    count = len(tile_starts(length, tile, overlap, multiple))
    if count == 1:
        return [0], length
    size = -(-(length + (count - 1) * overlap) // (count * multiple)) * multiple  # rounded up to the multiple
    while True:
        room = (length - size) // multiple  # the last start, in multiples
        starts = [round(i * room / (count - 1)) * multiple for i in range(count)]
        if all(a + size - b >= overlap for a, b in zip(starts, starts[1:], strict=False)):
            return starts, size
        size += multiple  # rounding the starts cost an overlap somewhere: one multiple more



def covering_windows(windows: Sequence[Window]) -> list[Window]:
    """The fewest of a full grid's windows that still cover all of it: per axis, from the first span on, the
    one that reaches furthest among those starting inside what is covered. Where tiles overlap by more than
    needed (`tile_windows`'s last tile, flush with the end), that drops whole rows and columns: a 2048-wide
    grid of 1024-wide tiles at 0, 768 and 1024 is covered by the tiles at 0 and 1024 alone."""
    def cover(spans: set[tuple[int, int]]) -> set[tuple[int, int]]:
        ordered, chosen, end = sorted(spans), set(), 0
        while True:
            reachable = [span for span in ordered if span[0] <= end]
            best = max(reachable, key=lambda span: span[0] + span[1])
            chosen.add(best)
            if best[0] + best[1] <= end or best[0] + best[1] >= max(a + b for a, b in ordered):
                return chosen
            end = best[0] + best[1]

    if not windows:
        return []
    rows = cover({(w.top, w.height) for w in windows})
    cols = cover({(w.left, w.width) for w in windows})
    return [w for w in windows if (w.top, w.height) in rows and (w.left, w.width) in cols]
