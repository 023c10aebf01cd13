"""The Heun sampler through the whole engine: seeded bytes, the mask's outside exact, and second order on a real
model's flow (the tiny FLUX), checked against a fine Euler solution of the same ODE."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from engine import upscale
from engine.errors import InvalidInput
from engine.pixels import conventional_resize, feather_mask, mask_resize
from engine.sampler import euler, heun, renoise
from engine.settings import UpscaleSettings


def _image(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (40, 48, 3), dtype=np.uint8)


def test_heun_with_tiles_mask_and_guidance_is_seeded_and_exact_outside_the_mask(tiny_backend):
    backend = tiny_backend("flux-dev")
    image = _image(1)
    rows, cols = np.mgrid[0:40, 0:48]
    mask = np.clip(1.5 - np.hypot(rows - 25, cols - 15) / 8.0, 0.0, 1.0).astype(np.float32)
    job = UpscaleSettings(scale=3, seed=4, sampler="heun", tile_size=64, tile_overlap=16, skip_residual=0.3,
                          acceleration_alignment=0.3, dilated_views=0.3)
    first = upscale(image, job, backend=backend, mask=mask, feather=1.0)
    again = upscale(image, job, backend=backend, mask=mask, feather=1.0)
    np.testing.assert_array_equal(first, again)
    euler_out = upscale(image, UpscaleSettings(**{**job.to_dict(), "sampler": "euler"}), backend=backend, mask=mask,
                        feather=1.0)
    assert not np.array_equal(first, euler_out)
    size = (first.shape[1], first.shape[0])
    outside = mask_resize(feather_mask(mask, 1.0), size) == 0
    conventional = np.round(conventional_resize(image.astype(np.float32) / 255, size) * 255).astype(np.uint8)
    assert outside.any() and (~outside).any()
    np.testing.assert_array_equal(first[outside], conventional[outside])
    assert np.abs(first[~outside].astype(int) - conventional[~outside]).mean() > 1.0  # the model ran inside


def test_heun_is_closer_than_euler_to_the_models_exact_flow(tiny_backend):
    backend = tiny_backend("flux-dev")
    generator = torch.Generator().manual_seed(0)
    latent = torch.randn(1, 16, 8, 8, generator=generator)
    x = renoise(latent, torch.randn(latent.shape, generator=generator), 0.6)
    cond = backend.encode_prompt("")

    def velocity(z, sigma):
        return backend.velocity(z, sigma, cond)

    def grid(n):  # n steps from 0.6 to 0.1: the part of the flow where the velocity bends
        return [0.6 - 0.5 * i / n for i in range(n + 1)]

    exact = euler(velocity, x, grid(512))
    euler_error = float((euler(velocity, x, grid(4)) - exact).norm())
    heun_error = float((heun(velocity, x, grid(4)) - exact).norm())
    assert heun_error < 0.5 * euler_error, (heun_error, euler_error)


def test_heun_with_stochastic_noise_is_refused_in_one_line(tiny_backend):
    with pytest.raises(InvalidInput, match="euler sampler only"):
        upscale(_image(), UpscaleSettings(sampler="heun", stochastic=0.3), backend=tiny_backend("flux-dev"))
    with pytest.raises(InvalidInput, match="sampler must be one of euler, heun"):
        UpscaleSettings(sampler="dpm")


def test_heun_progress_grows_to_one_across_both_model_calls_of_each_step(tiny_backend):
    backend = tiny_backend("flux-dev")
    calls, velocity = [], backend.velocity

    def counting(x, sigma, cond):
        calls.append(sigma)
        return velocity(x, sigma, cond)

    backend.velocity = counting
    events = []
    try:
        upscale(_image(2), UpscaleSettings(scale=2, sampler="heun", direction_alignment=0.0, match_statistics=False),
                backend=backend, on_progress=events.append)
    finally:
        del backend.velocity
    steps = events[-1].steps
    assert len(calls) == 2 * steps - 1  # a corrector call on every step but the one to sigma 0
    fractions = [e.fraction for e in events]
    assert all(a < b for a, b in zip(fractions, fractions[1:], strict=False)) and fractions[-1] == 1.0
    assert {e.step for e in events if e.phase.startswith("denoising")} <= set(range(steps + 1))
