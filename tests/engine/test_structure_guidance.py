"""Structure guidance wired into the stage loop: off is the plain loop exactly, and each switch does its job.

The maths itself is tested on plain tensors in test_guidance.py; here it meets the tiny FLUX model.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from engine import upscale
from engine.errors import InvalidInput
from engine.field import Aligned, ModelVelocity, Trajectory, skip_residual_move
from engine.guidance import butterworth_lowpass, lowpass, scale_aware_sigma
from engine.pipeline import _matched
from engine.pixels import conventional_resize, crop_to, from_model_tensor, mask_resize, pad_to_multiple, to_model_tensor
from engine.sampler import euler, renoise
from engine.schedule import remaining_sigmas
from engine.settings import StructureGuidance, UpscaleSettings
from engine.stages import plan
from engine.tile_grid import TileGrid

OFF = {"skip_residual": 0.0, "direction_alignment": 0.0, "acceleration_alignment": 0.0, "match_statistics": False,
       "scale_aware": False, "stochastic": 0.0}


def _image(height: int = 40, width: int = 48, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((height, width, 3)).astype(np.float32)


def test_with_every_guidance_switch_off_the_result_is_the_plain_loop_exactly(tiny_backend):
    backend = tiny_backend("flux-dev")
    image = _image()
    out = upscale(image, UpscaleSettings(scale=2, seed=3, **OFF), backend=backend)
    # The plain loop, written out: upsample, encode, re-noise, Euler with the model's velocity, decode.
    sigmas = remaining_sigmas(backend.default_steps, backend.default_strength, backend.shift_rule,
                              backend.native_tokens)
    padded, size_hw = pad_to_multiple(to_model_tensor(conventional_resize(image, (96, 80))), backend.latent_multiple)
    latent = backend.encode(padded)
    noise = torch.randn(latent.shape, generator=torch.Generator("cpu").manual_seed(3), dtype=torch.float32)
    x, cond = renoise(latent, noise, sigmas[0]), backend.encode_prompt("")
    for sigma, sigma_next in zip(sigmas, sigmas[1:], strict=False):
        x = x + (sigma_next - sigma) * backend.velocity(x, sigma, cond)
    plain = from_model_tensor(crop_to(backend.decode(x), size_hw))
    np.testing.assert_array_equal(out, plain)
    # and the model's default guidance does change the result
    assert not np.array_equal(upscale(image, scale=2, seed=3, backend=backend), out)


def _field(backend, guidance, reference=None, seed=0):
    """A stage's velocity on a random latent: the model's, wrapped in HiFlow's alignment where there is a reference."""
    generator = torch.Generator("cpu").manual_seed(seed)
    latent = torch.randn(1, 16, 8, 8, generator=generator)
    noise = torch.randn(latent.shape, generator=generator)
    sigmas = tuple(remaining_sigmas(backend.default_steps, 0.35, backend.shift_rule, backend.native_tokens))
    cond = backend.encode_prompt("")
    grid = TileGrid.for_backend(backend, backend.default_tile_size, backend.default_tile_overlap)
    velocity = ModelVelocity(backend, cond, grid, latent, sigma_start=sigmas[0])
    if reference is not None:
        velocity = Aligned(velocity, reference, sigma_start=sigmas[0], direction=guidance.direction_alignment,
                           acceleration=guidance.acceleration_alignment)
    return velocity, renoise(latent, noise, sigmas[0]), sigmas, (latent, noise)


def test_direction_alignment_gives_x0_hat_the_reference_trajectorys_low_band(tiny_backend):
    backend = tiny_backend("flux-dev")
    reference = Trajectory()
    reference.record(0.35, torch.randn(1, 16, 4, 4, generator=torch.Generator().manual_seed(9)))  # a stage at half size
    plain, x, sigmas, _ = _field(backend, StructureGuidance())
    guided, _, _, _ = _field(backend, StructureGuidance(direction_alignment=1.0), reference)
    sigma = sigmas[0]
    target = reference.at(sigma, (8, 8), x.device)
    mask = butterworth_lowpass(8, 8)
    plain_x0, guided_x0 = x - sigma * plain(x, sigma), x - sigma * guided(x, sigma)
    # alpha is at its peak (1) at the stage start: the low band moves onto the reference's
    # (a Butterworth band is soft near its cutoff, so part of it stays: 0.27 of the distance measured)
    assert lowpass(guided_x0 - target, mask).norm() < 0.35 * lowpass(plain_x0 - target, mask).norm()
    high = plain_x0 - lowpass(plain_x0, mask)
    torch.testing.assert_close(guided_x0 - lowpass(guided_x0, mask), high, atol=0.15 * float(high.abs().max()),
                               rtol=0)


def test_skip_residual_at_full_weight_steps_from_the_renoised_reference(tiny_backend):
    backend = tiny_backend("flux-dev")
    plain, x_reference, sigmas, (latent, noise) = _field(backend, StructureGuidance())
    move = skip_residual_move(latent, noise, sigma_start=sigmas[0], weight=1.0)
    x = x_reference + 0.3 * torch.randn(x_reference.shape, generator=torch.Generator().manual_seed(1))
    stepped = euler(plain, x, sigmas[:2], prepare=move)
    expected = euler(plain, x_reference, sigmas[:2])  # weight 1 at the start: x is replaced by the reference
    torch.testing.assert_close(stepped, expected, atol=1e-5, rtol=1e-5)


def test_stochastic_sampling_changes_the_result_and_stays_seeded(tiny_backend):
    backend = tiny_backend("flux-dev")
    image = _image()
    plain = upscale(image, UpscaleSettings(scale=2, seed=5, **OFF), backend=backend)
    noisy = {**OFF, "stochastic": 0.5}
    first = upscale(image, UpscaleSettings(scale=2, seed=5, **noisy), backend=backend)
    again = upscale(image, UpscaleSettings(scale=2, seed=5, **noisy), backend=backend)
    assert not np.array_equal(first, plain)
    np.testing.assert_array_equal(first, again)


def test_statistical_matching_gives_each_dilated_view_the_references_statistics():
    generator = torch.Generator().manual_seed(2)
    reference = torch.randn(1, 4, 6, 6, generator=generator) * 3 + 1
    upsampled = torch.randn(1, 4, 12, 12, generator=generator) * 0.5 - 2
    matched = _matched(upsampled, reference)
    for i in range(2):
        for j in range(2):
            view = matched[..., i::2, j::2]
            torch.testing.assert_close(view.mean((-2, -1)), reference.mean((-2, -1)), atol=1e-4, rtol=0)
            torch.testing.assert_close(view.std((-2, -1), unbiased=False), reference.std((-2, -1), unbiased=False),
                                       atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("scale", [3.0, 4.0, 1.5])
def test_scale_aware_scheduling_starts_each_stage_at_its_factors_sigma(tiny_backend, scale):
    backend = tiny_backend("flux-dev")
    stages = plan(100, 80, scale, 0.35, 28, backend, scale_aware=True)
    previous = 100
    for stage in stages:
        assert stage.sigmas[0] == pytest.approx(scale_aware_sigma(0.35, stage.size[0] / previous))
        previous = stage.size[0]
    plain = plan(100, 80, scale, 0.35, 28, backend)
    assert [s.sigmas[0] for s in plain] == [0.35] * len(plain)


@pytest.mark.parametrize("sampler", [{"stochastic": 0.3}, {"sampler": "heun"}], ids=["euler_ancestral", "heun"])
def test_guidance_on_with_a_mask_keeps_the_outside_exact(tiny_backend, sampler):
    backend = tiny_backend("flux-dev")
    image = _image(64, 64, seed=4)
    mask = np.zeros((64, 64), np.float32)
    mask[20:40, 10:30] = 1.0
    everything = {"skip_residual": 1.0, "direction_alignment": 1.0, "acceleration_alignment": 0.5,
                  "match_statistics": True, "scale_aware": True, **sampler}
    out = upscale(image, UpscaleSettings(scale=4, seed=1, **everything), backend=backend, mask=mask)
    weight = mask_resize(mask, (256, 256))
    outside = weight == 0
    np.testing.assert_array_equal(out[outside], conventional_resize(image, (256, 256))[outside])


@pytest.mark.parametrize("bad", [{"skip_residual": 1.5}, {"direction_alignment": -0.1}, {"stochastic": True},
                                 {"match_statistics": "yes"}, {"scale_aware": 1}])
def test_guidance_settings_are_validated(bad):
    with pytest.raises(InvalidInput, match="must be"):
        UpscaleSettings(**bad)


def test_dilated_views_join_tiled_stages_and_are_off_at_weight_zero(tiny_backend):
    backend = tiny_backend("flux-dev")
    image = _image(64, 96, seed=6)
    tiles = {"tile_size": 64, "tile_overlap": 16, "seed": 2, "scale": 2, **OFF}
    plain = upscale(image, UpscaleSettings(**tiles), backend=backend)
    zero = upscale(image, UpscaleSettings(**{**tiles, "dilated_views": 0.0}), backend=backend)
    np.testing.assert_array_equal(zero, plain)
    dilated = upscale(image, UpscaleSettings(**{**tiles, "dilated_views": 1.0}), backend=backend)
    assert dilated.shape == plain.shape and not np.array_equal(dilated, plain)
    # a model whose condition is spatial (the built-in one) gets its condition dilated alongside
    out = upscale(image, UpscaleSettings(scale=2, tile_size=64, tile_overlap=16, dilated_views=1.0, tile_batch=3))
    assert out.shape == (128, 192, 3)
