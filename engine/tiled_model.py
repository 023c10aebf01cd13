"""The model and its VAE run over overlapping tiles, so memory follows the tile size and not the output size.

Where the tiles go and how their outputs blend is `engine.tile_grid`'s (pure geometry); here they meet a backend.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from itertools import chain

import torch
import torch.nn.functional as F
from torch import nn

from engine.allocator import release_free_memory
from engine.backends.base import Conditioning, FlowBackend
from engine.tile_grid import TileGrid, Window, blend_weights, covering_windows, fuse_tiles, scaled
from engine.work import Work, counted


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


# Computes a step's tile batches, in order, given (backend, x, sigma, cond, batches, local); `local(batch)` is this
# process's model call: unset, each batch runs here; a cluster worker sets one that hands some batches to other
# workers (engine/cluster/spread.py). A context variable, so only the thread (job) that set it spreads its tiles.
TILE_BATCHES: ContextVar[Callable[..., Iterator[torch.Tensor]] | None] = ContextVar("tile_batches", default=None)


def tiled_velocity(backend: FlowBackend, x: torch.Tensor, sigma: float, cond: Conditioning,
                   windows: Sequence[Window], weights: Sequence[torch.Tensor], out: torch.Tensor,
                   batch: int = 1, work: Work | None = None,
                   between: Callable[[torch.Tensor, Sequence[Window]], None] | None = None) -> torch.Tensor:
    """The velocity field fused from the windows' model calls, `batch` same-sized tiles per call; `out`
    holds what no window covers. Each call is one unit of `work`'s current phase. `between(out, done)` is
    called between calls with the velocity fused so far and the windows it holds (for previews)."""
    def local(group: list[Window]) -> torch.Tensor:
        tiles = torch.cat([x[(..., *w.slices)] for w in group])
        return backend.velocity(tiles, sigma, backend.crop_condition(cond, group))

    groups = list(tile_batches(windows, batch))
    spread = TILE_BATCHES.get()
    computed = spread(backend, x, sigma, cond, groups, local) if spread is not None else map(local, groups)

    def values() -> Iterator[torch.Tensor]:
        done = 0
        for group in groups:
            if work is not None:
                work.check()
            if between is not None and done:
                between(out, windows[:done])  # fuse_tiles has written every tile handed to it so far
            done += len(group)
            velocity = next(computed)
            if work is not None:
                work.unit()
            yield from velocity.split(x.shape[0])

    return fuse_tiles(values(), windows, weights, out)


@contextmanager
def shared_group_norm(module: nn.Module | None, first_pass: Callable[[], object]) -> Iterator[None]:
    """Inside the block, every GroupNorm of `module` normalises with the statistics of all its calls during
    `first_pass()` (a run over every tile) pooled, not its tile's own (why and what it buys: docs/engine-notes.md)."""
    norms = [m for m in module.modules() if isinstance(m, nn.GroupNorm)] if module is not None else []
    if not norms:
        yield
        return
    sums: dict[nn.GroupNorm, list[torch.Tensor]] = {}  # per group: [sum, sum of squares, count]

    def recording(norm: nn.GroupNorm) -> Callable[[torch.Tensor], torch.Tensor]:
        def forward(x: torch.Tensor) -> torch.Tensor:
            grouped = x.to(torch.float64, copy=True).reshape(x.shape[0], norm.num_groups, -1)
            total = grouped.sum(dim=2)
            # Squared in place: one float64 copy of the activation at a time, not two (a 1024 px tile's is 64 MiB).
            moments = [total, grouped.mul_(grouped).sum(dim=2), torch.tensor(float(grouped.shape[2]))]
            del grouped
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
            # The same float64 operations as `(x - mean) * inv_std`, in place on one copy (the same bytes, half
            # the temporaries: these were the largest blocks of a VAE tile, issue 21).
            grouped = x.to(torch.float64, copy=True).reshape(x.shape[0], norm.num_groups, -1)
            out = grouped.sub_(mean[..., None]).mul_(inv_std[..., None]).reshape(x.shape).to(x.dtype)
            del grouped
            if norm.affine:
                per_channel = (1, -1, *([1] * (x.ndim - 2)))  # (B, C, H, W), or (B, C, L) in attention
                out = out.mul_(norm.weight.view(per_channel)).add_(norm.bias.view(per_channel))
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


def _released(out: torch.Tensor) -> torch.Tensor:
    """`out`, once the heap's free pages are given back: a tiled VAE pass leaves its tiles' buffers free in the heap
    (engine.allocator keeps them for reuse), and the next phase's blocks, of other sizes, would be laid beside
    them rather than in them; at 16 MP that took the peak from 1276 to 1632 MiB (issue 21)."""
    release_free_memory()
    return out


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
        release_free_memory()  # what the phase before left free in the heap, before this pass's own blocks
        _run_all(tiles())
        release_free_memory()
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
        return _released(fuse_tiles(chain([first], values), windows, weights, out))


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
        return _released(fuse_tiles(chain([first], values), pixel_windows, weights, out))

