"""Issue 21 items 2 and 3: a cheaper VAE statistics pass and leaner denoising tiles keep the seams of before.

The tiling before issue 21 is rebuilt here: full-size tiles, the last flush with the end, a quarter-tile
overlap, a statistics pass over every tile. The defaults must compute less and step no more across tile
borders (engine.testing.seams), on the tiny random FLUX.1-dev's VAE and transformer.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from engine.testing.seams import border_ratio, tone_step
from engine.tile_grid import TileGrid, blend_weights, covering_windows, tile_windows
from engine.tiled_model import tiled_decode, tiled_encode, tiled_velocity

TILE, QUARTER, EIGHTH, PATCH = 16, 4, 2, 2  # latent positions: 128 px tiles on a 256 px image, as 1024 on 2048


@dataclass(frozen=True)
class Before(TileGrid):
    def windows(self, height: int, width: int):
        return tile_windows(height, width, self.tile, self.overlap, self.multiple)


BEFORE = Before(TILE, QUARTER, PATCH)
NOW = TileGrid(TILE, EIGHTH, PATCH, vae_overlap=QUARTER, statistics_cover=True)


@pytest.fixture(scope="module")
def setup(tiny_backend):
    backend = tiny_backend("flux-dev")
    with Image.open("engine/data/sample.jpg") as image:
        rgb = image.convert("RGB").crop((0, 0, 512, 512)).resize((256, 256), Image.Resampling.LANCZOS)
    pixels = torch.from_numpy(np.asarray(rgb, dtype=np.float32) / 127.5 - 1.0).permute(2, 0, 1)[None]
    latent = backend.encode(pixels)
    return backend, pixels, latent


def _tone(error: torch.Tensor, windows, scale: int) -> float:
    """The tone step in the error's own units (tone_step is relative to the mean error)."""
    return tone_step(error, windows, scale) * float(error.abs().mean())


def test_the_defaults_gather_statistics_on_covering_tiles_and_overlap_denoising_tiles_by_an_eighth(tiny_backend):
    grid = TileGrid.for_backend(tiny_backend("flux-dev"))
    assert grid.statistics_cover
    assert grid.overlap * 8 == grid.tile and grid.vae_ramp * 4 == grid.tile


def test_vae_tiles_step_no_more_across_borders_than_before(setup):
    """The encoder's statistics pass on the 4 tiles of 9 that cover the image (0 and 16 of 0, 12, 16 per axis)
    costs 4/9 of a full one; the tone steps between its tiles stay within 5 % of a full pass's, its edges no
    stronger. The decoder keeps the full pass (covering tiles stepped up to 36 % more): its result is as before."""
    backend, pixels, latent = setup
    windows = NOW.vae_windows(*latent.shape[-2:])
    assert windows == BEFORE.windows(*latent.shape[-2:]) and len(windows) == 9
    assert len(covering_windows(windows)) == 4
    before, now = (tiled_encode(backend, pixels, grid)[0] - latent[0] for grid in (BEFORE, NOW))
    assert not torch.equal(before, now)  # the cheaper pass did run
    assert _tone(now, windows, 1) < 1.05 * _tone(before, windows, 1)
    assert border_ratio(now.abs().mean(0), windows) < 1.05 * border_ratio(before.abs().mean(0), windows)
    assert torch.equal(tiled_decode(backend, latent, BEFORE), tiled_decode(backend, latent, NOW))


def test_denoising_tiles_compute_less_and_step_no_more_across_borders_than_before(setup):
    """A 1024 px stage's latent in 512 px tiles (as 2048 in 1024): 9 tiles of 48² positions spread evenly at an
    eighth-tile overlap instead of 64² placed as before. Each tile sees less of the image, so the fused velocity
    is further from a whole-image call (bench/seams.py); what must not grow is how much of that concentrates at
    the tile borders: the error near them over the error elsewhere, and the tone step between neighbours over
    the mean error."""
    backend, _, small = setup
    generator = torch.Generator().manual_seed(0)
    latent = F.interpolate(small, scale_factor=4, mode="bilinear") + 0.05 * torch.randn(
        (1, small.shape[1], 128, 128), generator=generator)
    x = 0.5 * latent + 0.5 * torch.randn(latent.shape, generator=generator)
    cond = backend.condition_stage(backend.encode_prompt(""), latent)
    whole = backend.velocity(x, 0.5, cond)
    measures = {}
    for key, grid in (("before", Before(64, 16, PATCH)), ("now", TileGrid(64, 8, PATCH, vae_overlap=16))):
        windows = grid.windows(*latent.shape[-2:])
        weights = blend_weights(*latent.shape[-2:], windows, grid.overlap)
        error = (tiled_velocity(backend, x, 0.5, cond, windows, weights, torch.zeros_like(x)) - whole)[0]
        measures[key] = (sum(w.height * w.width for w in windows) / 128**2, tone_step(error, windows),
                         border_ratio(error.abs().mean(0), windows))
    (area_before, tone_before, border_before), (area_now, tone_now, border_now) = measures["before"], measures["now"]
    assert area_before == 2.25 and area_now < 1.3  # (3 * 48 / 128)² = 1.27
    assert tone_now < 1.1 * tone_before and border_now < 1.05 * border_before, measures
