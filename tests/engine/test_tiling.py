"""Tiling maths on plain tensors, then tiles through real models: the built-in one and the tiny FLUX VAE."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine import upscale
from engine.backends.loader import load_backend
from engine.builtin.backend import BuiltinBackend
from engine.pixels import conventional_resize, feather_mask, mask_resize
from engine.testing.metrics import psnr
from engine.testing.seams import border_ratio
from engine.tile_grid import (
    SeparableWeights,
    TileGrid,
    Window,
    blend_weights,
    covered,
    dilate,
    fuse_tiles,
    tile_starts,
    tile_windows,
    windows_touching,
)
from engine.tiled_model import tile_batches, tiled_decode, tiled_encode

sizes = st.integers(1, 300)


@settings(max_examples=200, deadline=None)
@given(length=sizes, tile=st.integers(2, 128), overlap_share=st.floats(0.0, 0.49), multiple=st.sampled_from([1, 2, 4]))
def test_tiles_cover_every_position_with_at_least_the_overlap(length, tile, overlap_share, multiple):
    length, tile = length * multiple, max(1, tile // multiple) * multiple
    overlap = int(tile * overlap_share) // multiple * multiple  # TileGrid's overlaps are whole patches too
    starts = tile_starts(length, tile, overlap, multiple)
    side = min(tile, length)
    assert starts[0] == 0 and starts[-1] + side == length
    assert all(s % multiple == 0 for s in starts)
    assert all(b > a and a + side - b >= overlap for a, b in zip(starts, starts[1:], strict=False))


@settings(max_examples=150, deadline=None)
@given(height=sizes, width=sizes, tile=st.integers(8, 96), overlap_share=st.floats(0.0, 0.5),
       ramp_share=st.floats(0.0, 1.0))
def test_blend_weights_sum_to_one_everywhere(height, width, tile, overlap_share, ramp_share):
    overlap = min(int(tile * overlap_share), tile - 1)
    windows = tile_windows(height, width, tile, overlap)
    weights = blend_weights(height, width, windows, ramp=int(overlap * ramp_share * 2))
    assert isinstance(weights, SeparableWeights)  # a full grid never holds a dense weight per tile
    total = torch.zeros(height, width)
    for window, weight in zip(windows, weights, strict=True):
        assert weight.shape == (window.height, window.width) and bool((weight > 0).all())
        total[window.slices] += weight
    torch.testing.assert_close(total, torch.ones(height, width), atol=1e-6, rtol=0)


def test_blend_weights_of_a_subset_sum_to_one_where_covered_and_fuse_keeps_the_rest():
    windows = tile_windows(50, 70, 24, 8)
    chosen = windows[::3]
    weights = blend_weights(50, 70, chosen, 8)
    x = torch.randn(1, 2, 50, 70)
    outside = torch.full_like(x, 7.0)
    fused = fuse_tiles((x[(..., *w.slices)] for w in chosen), chosen, weights, outside.clone())
    inside = covered(50, 70, chosen)
    torch.testing.assert_close(fused[..., inside], x[..., inside])  # a partition of unity reproduces its input
    assert bool((fused[..., ~inside] == 7.0).all()) and bool((~inside).any())


def test_ramps_only_face_neighbours():
    windows = tile_windows(10, 40, 20, 10)  # one row of tiles: rows never ramp
    weights = blend_weights(10, 40, windows, 10)
    assert bool((weights[0][:, :5] == 1).all())  # the image's left border keeps full weight
    torch.testing.assert_close(weights[0][0], weights[0][-1])


def test_dilate_and_touching():
    region = torch.zeros(20, 20, dtype=torch.bool)
    region[0, 0] = True
    grown = dilate(region, 3)
    assert int(grown.sum()) == 16 and bool(grown[3, 3]) and not bool(grown[4, 0])
    windows = tile_windows(20, 20, 8, 2)
    assert windows_touching(windows, region) == [Window(0, 0, 8, 8)]


def test_tile_grid_rounds_to_whole_patches():
    builtin = load_backend("builtin", device="cpu")
    grid = TileGrid.for_backend(builtin, 257, 33)
    assert (grid.tile, grid.overlap, grid.multiple) == (256, 34, 2)
    assert TileGrid.for_backend(builtin, 64, 64).overlap == 32  # at most half a tile


def _photo(height: int, width: int) -> np.ndarray:
    """A smooth, photo-like test image with some edges (not noise: tiles should agree on it)."""
    y, x = np.mgrid[0:height, 0:width] / 40.0
    rgb = np.stack([np.sin(x + 0.3 * y), np.cos(0.7 * y) * np.sin(0.5 * x), (x * y) % 1.0], axis=2)
    return (rgb * 0.4 + 0.5).clip(0, 1).astype(np.float32)


# Heun differs from Euler only with 2 steps or more (the step to sigma 0 is Euler's): the built-in model's default is 1.
SAMPLERS = [pytest.param({}, id="euler"), pytest.param({"sampler": "heun", "steps": 2}, id="heun")]


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_built_in_model_tiled_matches_untiled(sampler):
    image = _photo(150, 190)
    whole = upscale(image, scale=2, **sampler)  # 380x300: one 1024 px tile
    tiled = upscale(image, scale=2, tile_size=128, tile_overlap=64, **sampler)  # 4x3 tiles
    assert psnr(tiled, whole) > 45.0  # the blend hides seams: tiles see the same pixels up to their edge


class CountingBackend(BuiltinBackend):
    """The shipped built-in model, counting the pixels each velocity call works on."""

    def __init__(self) -> None:
        shipped = load_backend("builtin", device="cpu")
        super().__init__(shipped.net, shipped.info, source="counting", device=torch.device("cpu"),
                         dtype=torch.float32)
        self.pixels_seen = 0

    def velocity(self, x, sigma, cond):  # noqa: ANN001, ANN201
        self.pixels_seen += x.shape[-1] * x.shape[-2]
        return super().velocity(x, sigma, cond)


@pytest.mark.parametrize("sampler", SAMPLERS)
@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.integers(0, 2**31), st.integers(40, 200), st.integers(40, 200))
def test_outside_a_mask_the_tiled_output_is_the_conventional_upscale_exactly(sampler, seed, width, height):
    rng = np.random.default_rng(seed)
    image = rng.random((height, width, 3)).astype(np.float32)
    mask = np.zeros((height, width), np.float32)
    top, left = rng.integers(0, height - 10), rng.integers(0, width - 10)
    mask[top : top + 10, left : left + 10] = rng.random((10, 10)).astype(np.float32)
    out = upscale(image, scale=2, seed=seed, mask=mask, tile_size=96, tile_overlap=16, feather=1.5, **sampler)
    weight = mask_resize(feather_mask(mask, 1.5), out.shape[1::-1])
    conventional = conventional_resize(image, out.shape[1::-1])
    outside = weight == 0
    assert outside.any() and (~outside).any()
    np.testing.assert_array_equal(out[outside], conventional[outside])


def test_a_small_mask_computes_only_the_tiles_near_it():
    image = _photo(400, 400)
    backend = CountingBackend()
    upscale(image, scale=2, backend=backend, tile_size=128, tile_overlap=32)
    full = backend.pixels_seen
    mask = np.zeros((400, 400), np.float32)
    mask[300:320, 300:320] = 1.0  # 0.25 % of the image
    backend.pixels_seen = 0
    out = upscale(image, scale=2, backend=backend, mask=mask, tile_size=128, tile_overlap=32)
    assert backend.pixels_seen * 5 < full, (backend.pixels_seen, full)  # only its box plus context is sent
    # and the region really went through the model: it differs from the conventional upscale there
    assert not np.allclose(out[600:640, 600:640], conventional_resize(image, (800, 800))[600:640, 600:640],
                           atol=1e-3)
    mask[10:30, 10:30] = 1.0  # a second spot far away: the box is the whole image, tiles between are skipped
    backend.pixels_seen = 0
    upscale(image, scale=2, backend=backend, mask=mask, tile_size=128, tile_overlap=32)
    assert backend.pixels_seen * 2 < full, (backend.pixels_seen, full)


def _vae_errors(backend, pixels, grid):
    latent = backend.encode(pixels)
    tiled_latent = tiled_encode(backend, pixels, grid)
    whole, tiled = backend.decode(latent), tiled_decode(backend, latent, grid)
    assert tiled_latent.shape == latent.shape and tiled.shape == whole.shape
    return float((tiled_latent - latent).abs().mean()), float((tiled - whole).abs().mean())


def test_tiled_vae_has_no_seam_along_tile_borders(tiny_backend):
    """The mean error alone (0.05 against a latent std of 0.13) hides a seam: bound the error along the tile
    edges relative to the error inside the tiles. With pooled GroupNorm statistics and blended tiles the
    edges are about as good as the inside (1.14 encoding, 1.38 decoding with this random VAE, whose
    per-tile padding shows through); each tile with its own statistics gives 1.31 and 1.40."""
    backend = tiny_backend("flux-dev")
    pixels = torch.from_numpy(_photo(192, 256)).permute(2, 0, 1)[None] * 2 - 1
    grid = TileGrid.for_backend(backend, 128, 32)
    latent = backend.encode(pixels)
    encode_error = (tiled_encode(backend, pixels, grid) - latent).abs().mean(1)[0]
    decode_error = (tiled_decode(backend, latent, grid) - backend.decode(latent)).abs().mean(1)[0]
    windows = grid.vae_windows(*latent.shape[-2:])
    assert len(windows) == 6
    encode_ratio = border_ratio(encode_error, windows, 1)
    decode_ratio = border_ratio(decode_error, windows, backend.vae_scale)
    assert encode_ratio < 1.25 and decode_ratio < 1.5, (encode_ratio, decode_ratio)


def test_tiled_vae_matches_untiled_within_tolerance(tiny_backend, monkeypatch):
    backend = tiny_backend("flux-dev")
    pixels = torch.from_numpy(_photo(192, 256)).permute(2, 0, 1)[None] * 2 - 1
    grid = TileGrid.for_backend(backend, 128, 32)  # 16-latent tiles: 3x2 of them
    encode_error, decode_error = _vae_errors(backend, pixels, grid)
    # Stated tolerances (mean absolute difference; latent std 0.13, pixel std 0.27 here). The random tiny
    # VAE is far less smooth than a trained one; its mid-block attention sees only its tile.
    assert encode_error < 0.06 and decode_error < 0.08, (encode_error, decode_error)
    # Pooled GroupNorm statistics are what keeps tiles close: each tile on its own is further off.
    monkeypatch.setattr(type(backend), "vae_module", property(lambda self: None))
    per_tile = _vae_errors(backend, pixels, grid)
    assert encode_error < 0.85 * per_tile[0] and decode_error < 0.85 * per_tile[1], per_tile


def test_tile_batches_group_consecutive_tiles_of_one_size():
    windows = [Window(0, 0, 4, 4), Window(0, 4, 4, 4), Window(0, 8, 4, 3), Window(4, 0, 4, 4), Window(4, 4, 4, 4),
               Window(4, 8, 4, 4)]
    groups = list(tile_batches(windows, 2))
    assert groups == [windows[0:2], windows[2:3], windows[3:5], windows[5:6]]
    assert [w for g in tile_batches(windows, 64) for w in g] == windows


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_batched_tiles_give_the_same_result_as_one_at_a_time(tiny_backend, sampler):
    image = _photo(150, 190)
    one = upscale(image, scale=2, tile_size=128, tile_overlap=32, **sampler)
    batched = upscale(image, scale=2, tile_size=128, tile_overlap=32, tile_batch=4, **sampler)
    np.testing.assert_allclose(batched, one, atol=2e-5)
    flux = tiny_backend("flux-dev")
    tiles = {"tile_size": 64, "tile_overlap": 16, "seed": 2, "sampler": sampler.get("sampler", "euler")}
    one = upscale(image[:64, :96], scale=2, backend=flux, **tiles)
    batched = upscale(image[:64, :96], scale=2, backend=flux, tile_batch=3, **tiles)
    np.testing.assert_allclose(batched, one, atol=1e-4)
