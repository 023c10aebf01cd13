"""The built-in model's v2 degradations (Real-ESRGAN second order) and the block-grid ratio: pure functions."""

from __future__ import annotations

import math

import numpy as np
import pytest

from engine.builtin import data, degradations
from engine.builtin.metrics import block_grid_ratio
from engine.pixels import conventional_resize


def photo_like(seed: int, height: int = 64, width: int = 64) -> np.ndarray:
    noise = np.random.default_rng(seed).random((height, width, 3)).astype(np.float32)
    return data._blur(noise, 1.5)


def test_gaussian_kernel_is_normalised_symmetric_and_rotates():
    iso = degradations.gaussian_kernel(1.2, 1.2, 0.0)
    assert iso.shape == (9, 9) and math.isclose(float(iso.sum()), 1.0, rel_tol=1e-5)
    np.testing.assert_allclose(iso, iso.T, atol=1e-7)
    wide = degradations.gaussian_kernel(2.0, 0.5, 0.0)  # spread along x (columns)
    assert wide[wide.shape[0] // 2].sum() > wide[:, wide.shape[1] // 2].sum()
    np.testing.assert_allclose(degradations.gaussian_kernel(2.0, 0.5, math.pi / 2), wide.T, atol=1e-6)
    with pytest.raises(ValueError, match="positive"):
        degradations.gaussian_kernel(0.0, 1.0, 0.0)


def test_blur_keeps_flat_images_and_the_mean_and_smooths_noise():
    flat = np.full((20, 24, 3), 0.3, np.float32)
    kernel = degradations.gaussian_kernel(1.5, 0.7, 0.4)
    np.testing.assert_allclose(degradations.blur(flat, kernel), flat, atol=1e-6)
    noise = np.random.default_rng(0).random((40, 40, 3)).astype(np.float32)
    blurred = degradations.blur(noise, kernel)
    assert blurred.shape == noise.shape and blurred.std() < 0.6 * noise.std()
    assert abs(float(blurred.mean() - noise.mean())) < 0.01


def test_noise_has_the_asked_strength_and_grey_noise_is_one_plane():
    image = np.full((64, 64, 3), 0.5, np.float32)
    noisy = degradations.gaussian_noise(image, np.random.default_rng(1), 10.0, grey=False)
    assert abs(float((noisy - image).std()) * 255 - 10.0) < 0.5
    grey = degradations.gaussian_noise(image, np.random.default_rng(1), 10.0, grey=True)
    np.testing.assert_array_equal(grey[..., 0], grey[..., 1])
    shot = degradations.poisson_noise(image, np.random.default_rng(2), 1.0, grey=False)
    assert abs(float((shot - image).std()) - math.sqrt(0.5 * 255) / 255) < 0.005  # Poisson: var = mean


def test_jpeg_is_pillows_and_leaves_8_bit_levels():
    image = photo_like(3)
    for quality in (30, 95):
        out = degradations.jpeg(image, quality)
        assert out.shape == image.shape and out.dtype == np.float32
        np.testing.assert_array_equal(np.round(out * 255) / 255, out)
    assert data.psnr(degradations.jpeg(image, 95), image) > data.psnr(degradations.jpeg(image, 30), image)


@pytest.mark.parametrize(("size", "factor"), [(64, 2), (48, 4), (66, 3)])
def test_second_order_lands_on_the_low_res_size_and_is_seeded(size, factor):
    hr = photo_like(4, size, size)
    size_lr = size // factor
    hr = hr[: size_lr * factor, : size_lr * factor]
    outs = [degradations.second_order(hr, np.random.default_rng(seed), factor) for seed in range(10)]
    again = [degradations.second_order(hr, np.random.default_rng(seed), factor) for seed in range(10)]
    for out, same in zip(outs, again, strict=True):
        assert out.shape == (size_lr, size_lr, 3) and out.min() >= 0.0 and out.max() <= 1.0
        np.testing.assert_array_equal(out, same)
    assert len({out.tobytes() for out in outs}) == 10


def test_the_training_mix_has_clean_eval_jpeg_and_second_order_pairs_in_their_shares():
    hr = photo_like(5)
    clean = data.eval_pair(hr, 2)[1]
    kinds = {"clean": 0, "jpeg of clean": 0, "other": 0}
    for seed in range(200):
        rng = np.random.default_rng(seed)
        draw = np.random.default_rng(seed).random()
        lr = data.degrade(hr, rng)
        if np.array_equal(lr, clean):
            kinds["clean"] += 1
        elif draw < data.CLEAN_SHARE + data.EVAL_JPEG_SHARE:
            kinds["jpeg of clean"] += 1
        else:
            kinds["other"] += 1
    assert abs(kinds["clean"] - 200 * data.CLEAN_SHARE) < 25
    assert abs(kinds["jpeg of clean"] - 200 * data.EVAL_JPEG_SHARE) < 25


def test_block_grid_ratio_is_near_one_for_a_smooth_upscale_and_high_on_a_blocky_one():
    hr = photo_like(6, 128, 128)
    _, lr = data.eval_pair(hr, 2)
    smooth = conventional_resize(lr, (128, 128))
    assert 0.8 < block_grid_ratio(smooth, 2) < 1.15
    blocky = conventional_resize(degradations.jpeg(lr, 10), (128, 128))
    assert block_grid_ratio(blocky, 2) > 1.3
    steps = np.zeros((32, 32, 3), np.float32)
    steps[:, 16:] = 1.0  # one edge, exactly on the 16-px border of a x2 output
    assert block_grid_ratio(steps, 2) > 100
    with pytest.raises(ValueError, match="no 16-pixel block border"):
        block_grid_ratio(np.zeros((10, 10, 3), np.float32), 2)
