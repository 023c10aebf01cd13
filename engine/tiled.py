"""Model calls split into overlapping tiles, so memory follows the tile size and not the output size.

The geometry and the blend weights are `engine.tiling`'s; here they meet a backend. A job's `TileGrid` says
how big tiles are (in latent positions) and how much neighbours overlap; a stage asks it for windows.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import chain

import torch
import torch.nn.functional as F
from torch import nn

from engine.backends.base import Conditioning, FlowBackend
from engine.tiling import Window, blend_weights, covering_windows, fuse_tiles, scaled, spread_windows, tile_windows
from engine.work import Work, counted


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
        """The model's tiles: spread evenly, shrunk to the overlap they need (engine.tiling.spread_windows)."""
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


def tile_batches(windows: Sequence[Window], batch: int) -> Iterator[list[Window]]:
    """Consecutive windows of the same size, at most `batch` at a time: what one model call can take."""
    group: list[Window] = []
    for window in windows:
        if group and (len(group) == batch or (window.height, window.width) != (group[0].height, group[0].width)):
            yield group
            group = []
        group.append(window)
    if group:
        yield group


def tiled_velocity(backend: FlowBackend, x: torch.Tensor, sigma: float, cond: Conditioning,
                   windows: Sequence[Window], weights: Sequence[torch.Tensor], out: torch.Tensor,
                   batch: int = 1, work: Work | None = None,
                   between: Callable[[torch.Tensor, Sequence[Window]], None] | None = None) -> torch.Tensor:
    """The velocity field fused from the windows' model calls, `batch` same-sized tiles per call; `out`
    holds what no window covers. Each call is one unit of `work`'s current phase. `between(out, done)` is
    called between calls with the velocity fused so far and the windows it holds (for previews)."""
    def values() -> Iterator[torch.Tensor]:
        done = 0
        for group in tile_batches(windows, batch):
            if work is not None:
                work.check()
            if between is not None and done:
                between(out, windows[:done])  # fuse_tiles has written every tile handed to it so far
            done += len(group)
            tiles = torch.cat([x[(..., *w.slices)] for w in group])
            velocity = backend.velocity(tiles, sigma, backend.crop_condition(cond, group))
            if work is not None:
                work.unit()
            yield from velocity.split(x.shape[0])

    return fuse_tiles(values(), windows, weights, out)


@contextmanager
def shared_group_norm(module: nn.Module | None, first_pass: Callable[[], object]) -> Iterator[None]:
    """Inside the block, every GroupNorm of `module` normalises with whole-image statistics: those of all
    its calls during `first_pass()` (a run over every tile) pooled, not with its tile's own.

    Per-tile statistics give each tile its own tone: the seams a tiled VAE is known for (DESIGN, facts).
    The first pass itself normalises per tile, so deeper layers' pooled statistics are an estimate; on the
    tiny test VAE it cuts the mean difference from untiled results by 30-40 % against per-tile statistics.
    (Statistics of a downsampled copy, the cheaper estimate, made that VAE three times worse.) It costs one
    extra pass of the VAE; attention in the VAE's middle block still sees only its tile.
    """
    norms = [m for m in module.modules() if isinstance(m, nn.GroupNorm)] if module is not None else []
    if not norms:
        yield
        return
    sums: dict[nn.GroupNorm, list[torch.Tensor]] = {}  # per group: [sum, sum of squares, count]

    def recording(norm: nn.GroupNorm) -> Callable[[torch.Tensor], torch.Tensor]:
        def forward(x: torch.Tensor) -> torch.Tensor:
            grouped = x.double().reshape(x.shape[0], norm.num_groups, -1)
            moments = [grouped.sum(dim=2), (grouped * grouped).sum(dim=2), torch.tensor(float(grouped.shape[2]))]
            if norm in sums:
                moments = [a + b for a, b in zip(sums[norm], moments, strict=True)]
            sums[norm] = moments
            return F.group_norm(x, norm.num_groups, norm.weight, norm.bias, norm.eps)
        return forward

    def shared(norm: nn.GroupNorm) -> Callable[[torch.Tensor], torch.Tensor]:
        total, squares, count = sums[norm]
        mean = total / count
        inv_std = torch.rsqrt((squares / count - mean * mean).clamp_min(0.0) + norm.eps)

        def forward(x: torch.Tensor) -> torch.Tensor:
            grouped = x.double().reshape(x.shape[0], norm.num_groups, -1)
            out = ((grouped - mean[..., None]) * inv_std[..., None]).reshape(x.shape).to(x.dtype)
            if norm.affine:
                per_channel = (1, -1, *([1] * (x.ndim - 2)))  # (B, C, H, W), or (B, C, L) in attention
                out = out * norm.weight.view(per_channel) + norm.bias.view(per_channel)
            return out
        return forward

    try:
        for norm in norms:
            norm.forward = recording(norm)
        first_pass()
        for norm in norms:
            if norm in sums:
                norm.forward = shared(norm)
            else:  # not on this path (the decoder's norms while encoding)
                del norm.forward
        yield
    finally:
        for norm in norms:
            norm.__dict__.pop("forward", None)  # back to the class's own forward


def _run_all(tiles: Iterator[torch.Tensor]) -> None:
    """Compute every tile and drop it: the first pass is run for the statistics it leaves behind."""
    for _ in tiles:
        pass


def _whole(work: Work | None, key: str, run: Callable[[], torch.Tensor]) -> torch.Tensor:
    """An untiled VAE call as one unit of `work`'s phase `key`."""
    if work is None:
        return run()
    work.begin(key)
    out = run()
    work.unit()
    return out


def _statistics_pass(work: Work | None, key: str, tiles: Callable[[], Iterator[torch.Tensor]],
                     count: int) -> Callable[[], None]:
    """The first pass of `shared_group_norm`, as the phase `key:statistics` of `work`."""
    def run() -> None:
        if work is not None:
            work.begin(f"{key}:statistics", count)
        _run_all(tiles())
    return run


def tiled_encode(backend: FlowBackend, pixels: torch.Tensor, grid: TileGrid, work: Work | None = None,
                 key: str = "encode") -> torch.Tensor:
    """backend.encode on pixel tiles whose latents are `grid`'s windows, blended in latent space; each tile
    (of the statistics pass, then of the encode) one unit of `work`'s phases `key:statistics` and `key`."""
    f = backend.vae_scale
    height, width = pixels.shape[-2] // f, pixels.shape[-1] // f
    if grid.fits(height, width) or not backend.vae_tiling:
        return _whole(work, key, lambda: backend.encode(pixels))
    windows = grid.vae_windows(height, width)
    weights = blend_weights(height, width, windows, grid.vae_ramp)

    def encode_tiles(tiles: Sequence[Window] = windows) -> Iterator[torch.Tensor]:
        return counted((backend.encode(pixels[(..., *scaled(w, f).slices)]) for w in tiles), work)

    sample = covering_windows(windows) if grid.statistics_cover else windows
    with shared_group_norm(backend.vae_module, _statistics_pass(work, key, lambda: encode_tiles(sample), len(sample))):
        if work is not None:
            work.begin(key, len(windows))
        values = encode_tiles()
        first = next(values)
        out = torch.zeros(*first.shape[:-2], height, width, dtype=first.dtype, device=first.device)
        return fuse_tiles(chain([first], values), windows, weights, out)


def tiled_decode(backend: FlowBackend, latent: torch.Tensor, grid: TileGrid, work: Work | None = None,
                 key: str = "decode") -> torch.Tensor:
    """backend.decode on `grid`'s latent windows, blended in pixel space with ramps `vae_scale` times longer;
    each tile one unit of `work`'s phases `key:statistics` and `key`, as in `tiled_encode`."""
    height, width = latent.shape[-2:]
    if grid.fits(height, width) or not backend.vae_tiling:
        return _whole(work, key, lambda: backend.decode(latent))
    f = backend.vae_scale
    windows = grid.vae_windows(height, width)
    pixel_windows = [scaled(w, f) for w in windows]
    weights = blend_weights(height * f, width * f, pixel_windows, grid.vae_ramp * f)
    def decode_tiles() -> Iterator[torch.Tensor]:
        return counted((backend.decode(latent[(..., *w.slices)]) for w in windows), work)

    with shared_group_norm(backend.vae_module, _statistics_pass(work, key, decode_tiles, len(windows))):
        if work is not None:
            work.begin(key, len(windows))
        values = decode_tiles()
        first = next(values)
        out = torch.zeros(*first.shape[:-2], height * f, width * f, dtype=first.dtype, device=first.device)
        return fuse_tiles(chain([first], values), pixel_windows, weights, out)

