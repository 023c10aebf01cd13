"""The JPEG block grid the built-in network is told about (engine/builtin/block_grid.py), on real JPEGs."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from engine import upscale
from engine.backends.loader import load_backend
from engine.builtin import block_grid
from engine.builtin.backend import BuiltinBackend
from engine.builtin.degradations import jpeg
from engine.pixels import conventional_resize
from engine.testing.metrics import psnr

SAMPLE = Path(__file__).resolve().parents[2] / "engine" / "data" / "sample.jpg"  # a web JPEG: its grid at (0, 0)


def _sample() -> np.ndarray:
    with Image.open(SAMPLE) as image:
        return np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0


def _up(image: np.ndarray) -> torch.Tensor:
    """A stage's input as the backend gets it: the 2x conventional upscale, (1, 3, H, W) in [-1, 1]."""
    up = conventional_resize(image, (image.shape[1] * 2, image.shape[0] * 2))
    return torch.from_numpy(up.transpose(2, 0, 1)[None] * 2.0 - 1.0)


@pytest.mark.parametrize(("top", "left"), [(0, 0), (3, 5), (7, 1)])
def test_the_grid_of_a_cropped_jpeg_is_found_where_its_blocks_are(top, left):
    image = jpeg(_sample(), 60)[top:, left:]  # a selection or crop whose origin is off the grid
    # A block border now lies before input pixel k where (k + offset) % 8 == 0: 2k in the 2x upscale.
    expected = tuple(2 * ((8 - offset) % 8) for offset in (top, left))
    assert block_grid.detect(_up(image)) == expected


def test_no_grid_is_found_in_a_photo_without_one():
    # sample.jpg's own grid averaged away by a 4x area downscale, and two stages' worth of smooth upscale.
    clean = np.asarray(Image.fromarray(np.round(_sample() * 255).astype(np.uint8)).reduce(4), np.float32) / 255
    assert block_grid.detect(_up(clean)) is None
    assert block_grid.detect(_up(conventional_resize(jpeg(_sample(), 60), (1200, 1024)))) is None  # 2nd stage


def test_positions_start_at_each_border_and_features_vanish_without_a_grid():
    grid = block_grid.positions(40, 48, (3, 10))
    assert grid.dtype == torch.uint8 and grid.shape == (1, 2, 40, 48)
    assert grid[0, 0, 3, 0] == 0 and grid[0, 0, 19, 7] == 0 and grid[0, 0, 2, 0] == 15
    assert grid[0, 1, 0, 10] == 0 and grid[0, 1, 5, 26] == 0 and grid[0, 1, 0, 9] == 15
    like = torch.zeros(2, 3, 40, 48)
    features = block_grid.features(grid, like, 2)
    assert features.shape == (2, block_grid.FEATURES, 20, 24) and features.abs().sum() > 0
    assert not block_grid.features(block_grid.positions(40, 48, None), like, 2).any()
    assert not block_grid.features(None, like, 2).any()


def test_the_shipped_network_is_told_the_grid_and_tiles_get_their_part_of_it():
    backend = load_backend("builtin", device="cpu")
    assert backend.net.config.grid_input  # the shipped v2 network takes the block positions
    image = jpeg(_sample()[100:250, 120:310], 60)[3:, 5:]
    latent = _up(image).float()
    cond = backend.condition_stage(backend.encode_prompt(), latent, (1.0, 0.0))
    assert "grid" in cond.extra and block_grid.detect(latent) == (10, 6)
    whole = upscale(image, scale=2)
    tiled = upscale(image, scale=2, tile_size=128, tile_overlap=64)  # tiles whose origins are off the grid
    assert psnr(tiled, whole) > 45.0
    # Told nothing, the same network gives another answer: the grid input is used.
    blind = upscale(image, scale=2, backend=_Blind(backend))
    assert psnr(blind, whole) < 60.0


class _Blind(BuiltinBackend):
    """The shipped built-in model with the detected grid withheld from its network."""

    def __init__(self, shipped: BuiltinBackend) -> None:
        super().__init__(shipped.net, shipped.info, source="blind", device=torch.device("cpu"), dtype=torch.float32)

    def condition_stage(self, cond, latent, sigmas=()):  # noqa: ANN001, ANN201
        staged = super().condition_stage(cond, latent, sigmas)
        return replace(staged, extra={key: value for key, value in staged.extra.items() if key != "grid"})
