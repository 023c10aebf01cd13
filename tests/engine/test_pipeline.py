"""The progressive upscale through the real loader and a tiny random FLUX model."""

from __future__ import annotations

import gc
import warnings
from itertools import pairwise

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from engine import Cancelled, CancelToken, UpscaleSettings, upscale
from engine.errors import DeviceError, InvalidInput
from engine.pixels import conventional_resize, from_image, mask_resize
from engine.stages import plan


@pytest.fixture(scope="module")
def flux(tiny_backend):
    return tiny_backend("flux-dev")


def test_scale_two_gives_exactly_twice_the_size(flux, sample_image):
    out = upscale(sample_image, backend=flux, scale=2)
    assert isinstance(out, Image.Image) and out.mode == "RGB"
    assert out.size == (128, 150)


@pytest.mark.parametrize(("size", "scale", "expected"), [((37, 23), 2, (74, 46)), ((17, 31), 1.5, (26, 47)),
                                                          ((5, 3), 3, (15, 9))])
def test_sizes_off_the_latent_multiple_are_padded_not_distorted(flux, size, scale, expected):
    rng = np.random.default_rng(1)
    out = upscale(rng.integers(0, 256, (*size[::-1], 3), dtype=np.uint8), backend=flux, scale=scale)
    assert out.shape == (expected[1], expected[0], 3)


def test_four_x_runs_two_stages_with_monotone_progress_ending_at_one(flux, sample_image):
    events = []
    upscale(sample_image, backend=flux, scale=4, on_progress=events.append)
    assert {e.stages for e in events} == {2}
    assert [e.stage for e in events] == sorted(e.stage for e in events) and events[-1].stage == 2
    fractions = [e.fraction for e in events]
    assert all(a < b for a, b in pairwise(fractions))
    assert fractions[-1] == 1.0
    assert all(e.step <= e.steps for e in events)


def test_same_seed_same_bytes_other_seed_other_bytes(flux, sample_image):
    a = np.asarray(upscale(sample_image, backend=flux, seed=7))
    b = np.asarray(upscale(sample_image, backend=flux, seed=7))
    c = np.asarray(upscale(sample_image, backend=flux, seed=8))
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_strength_zero_is_exactly_the_conventional_upscale(flux, sample_image):
    out = upscale(sample_image, backend=flux, scale=2, strength=0.0)
    pixels = from_image(sample_image)
    expected = np.round(conventional_resize(pixels.rgb, (128, 150)) * 255).astype(np.uint8)
    assert np.array_equal(np.asarray(out), expected)


def test_strength_changes_the_result_and_model_runs_only_the_schedule_tail(flux):
    low = plan(64, 64, 2, 0.2, 28, flux)[0]
    high = plan(64, 64, 2, 0.8, 28, flux)[0]
    assert low.sigmas[0] == 0.2 and high.sigmas[0] == 0.8
    assert 1 <= low.steps < high.steps < 28


def test_mu_stays_at_the_native_token_count_for_every_stage(flux):
    stages = plan(64, 64, 8, 0.5, 28, flux)
    assert len(stages) == 3 and len({s.sigmas for s in stages}) == 1  # no resolution-dependent shift


def test_alpha_is_resized_conventionally_and_reattached(flux):
    rng = np.random.default_rng(2)
    rgba = rng.integers(0, 256, (20, 24, 4), dtype=np.uint8)
    out = upscale(rgba, backend=flux, scale=2)
    assert out.shape == (40, 48, 4) and out.dtype == np.uint8
    expected_alpha = np.round(conventional_resize(rgba[:, :, 3].astype(np.float32) / 255, (48, 40)) * 255)
    assert np.array_equal(out[:, :, 3], expected_alpha.astype(np.uint8))


def test_sixteen_bit_in_sixteen_bit_out(flux):
    rng = np.random.default_rng(3)
    array = rng.integers(0, 65536, (16, 16, 3), dtype=np.uint16)
    out = upscale(array, backend=flux, scale=2)
    assert out.dtype == np.uint16 and out.shape == (32, 32, 3)
    assert len(np.unique(out)) > 256  # really 16-bit, not 8-bit values scaled up


def _live_tensors() -> int:
    gc.collect()
    with warnings.catch_warnings():  # isinstance() on torch's deprecated module proxies warns
        warnings.simplefilter("ignore")
        return sum(1 for o in gc.get_objects() if isinstance(o, torch.Tensor) and not isinstance(o, torch.nn.Parameter))


def test_cancel_stops_within_one_step_and_leaves_nothing_behind(flux, sample_image):
    upscale(sample_image, backend=flux, scale=4)  # warm caches so the count below compares like with like
    before = _live_tensors()
    cancel = CancelToken()
    events = []

    def on_progress(event):
        events.append(event)
        if len(events) == 2:
            cancel.cancel()

    try:
        upscale(sample_image, backend=flux, scale=4, on_progress=on_progress, cancel=cancel)
        pytest.fail("a cancelled job must not return a result")
    except Cancelled:
        pass
    assert len(events) == 2  # no step ran after the one during which cancel was pressed
    assert _live_tensors() <= before


def test_too_large_for_the_memory_budget_is_refused_before_starting(flux, sample_image):
    with pytest.raises(DeviceError, match="needs about .* available"):
        upscale(sample_image, backend=flux, scale=4, max_memory=1024)


def test_settings_validation_names_the_value():
    with pytest.raises(InvalidInput, match="scale must be more than 1.*got 1"):
        UpscaleSettings(scale=1)
    with pytest.raises(InvalidInput, match="strength .* got 1.5"):
        UpscaleSettings(strength=1.5)
    with pytest.raises(InvalidInput, match="unknown setting"):
        UpscaleSettings.from_dict({"scael": 2})
    assert UpscaleSettings.from_dict(UpscaleSettings(scale=3, seed=4).to_dict()) == UpscaleSettings(scale=3, seed=4)


@pytest.mark.parametrize("sampler", ["euler", "heun"])
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.integers(8, 40), st.integers(8, 40), st.sampled_from([1.5, 2.0, 3.0]), st.integers(0, 2**31))
def test_outside_the_mask_the_output_is_the_conventional_upscale_exactly(flux, sampler, width, height, scale, seed):
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    mask = np.zeros((height, width), np.uint8)
    x0, y0 = rng.integers(0, width // 2), rng.integers(0, height // 2)
    region = mask[y0 : y0 + height // 3, x0 : x0 + width // 3]
    region[...] = rng.integers(1, 256, region.shape)
    out = upscale(image, backend=flux, scale=scale, mask=mask, sampler=sampler)
    size = (out.shape[1], out.shape[0])
    conventional = np.round(conventional_resize(image.astype(np.float32) / 255, size) * 255).astype(np.uint8)
    # "Outside" is judged on the input mask: every output pixel whose centre lies over a black input pixel.
    outside = np.asarray(Image.fromarray(mask).resize(size, Image.Resampling.NEAREST)) == 0
    assert outside.any() and (~outside).any()
    assert np.array_equal(out[outside], conventional[outside])


@pytest.mark.parametrize("scale", [2.0, 3.0, 1.5])
def test_a_hard_mask_is_resized_without_ringing(flux, scale):
    """Lanczos gave weights over 0 above black input pixels and 0.97 inside white ones; now black stays 0
    and a pixel whose whole input neighbourhood is white gets exactly 1."""
    image = np.random.default_rng(5).integers(0, 256, (30, 40, 3), dtype=np.uint8)
    mask = np.zeros((30, 40), np.uint8)
    mask[6:24, 8:30] = 255
    mask[12:16, 14:20] = 0  # a hole: edges in both directions
    out = upscale(image, backend=flux, scale=scale, mask=mask, region_only=True)
    size = (out.shape[1], out.shape[0])
    alpha = out[:, :, 3]
    under = np.asarray(Image.fromarray(mask).resize(size, Image.Resampling.NEAREST))
    eroded = mask.copy()
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            eroded = np.minimum(eroded, np.roll(mask, (dy, dx), axis=(0, 1)))
    inside = np.asarray(Image.fromarray(eroded).resize(size, Image.Resampling.NEAREST)) == 255
    assert (alpha[under == 0] == 0).all(), f"{(alpha[under == 0] > 0).sum()} pixels over black have weight"
    assert inside.any() and (alpha[inside] == 255).all(), f"inside weights down to {alpha[inside].min()}"
    conventional = np.round(conventional_resize(image.astype(np.float32) / 255, size) * 255).astype(np.uint8)
    plain = upscale(image, backend=flux, scale=scale, mask=mask)
    assert np.array_equal(plain[under == 0], conventional[under == 0])


def test_a_soft_mask_weighs_the_models_pixels_by_the_mask_itself(flux):
    """Mask 0.5 everywhere denoises the same latents as mask 1 (both select every tile), so its result is
    the half-and-half mix of that and the conventional upscale, not a mix weighted by 0.5 squared."""
    image = np.random.default_rng(3).random((24, 32, 3), dtype=np.float32)
    full = upscale(image, backend=flux, mask=np.ones((24, 32), np.float32))
    half = upscale(image, backend=flux, mask=np.full((24, 32), 0.5, np.float32))
    conventional = conventional_resize(image, (64, 48))
    assert np.abs(full - conventional).mean() > 0.01  # the model did change the pixels
    np.testing.assert_allclose(half, 0.5 * full + 0.5 * conventional, atol=1e-5)


def test_region_only_returns_the_mask_as_alpha(flux):
    image = np.full((16, 24, 3), 128, np.uint8)
    mask = np.zeros((16, 24), np.uint8)
    mask[4:12, 6:18] = 255
    out = upscale(image, backend=flux, mask=mask, region_only=True)
    assert out.shape == (32, 48, 4)
    expected = np.round(mask_resize(mask.astype(np.float32) / 255, (48, 32)) * 255).astype(np.uint8)
    assert np.array_equal(out[:, :, 3], expected)


def test_an_empty_mask_never_calls_the_model(flux, monkeypatch):
    image = np.full((16, 16, 3), 60, np.uint8)
    monkeypatch.setattr(flux, "velocity", lambda *a: pytest.fail("the model ran for an empty selection"))
    out = upscale(image, backend=flux, mask=np.zeros((16, 16), np.uint8))
    assert out.shape == (32, 32, 3)


def test_a_mask_of_another_size_is_refused(flux):
    with pytest.raises(InvalidInput, match="mask is 8x8 but the image is 16x16"):
        upscale(np.zeros((16, 16, 3), np.uint8), backend=flux, mask=np.zeros((8, 8), np.uint8))


def test_previews_come_every_nth_step_small_and_in_the_image_aspect(flux, sample_image):
    events = []
    upscale(sample_image, backend=flux, scale=4, on_progress=events.append, preview_every=2)
    with_preview = [e for e in events if e.preview is not None]
    steps = {e.stage: e.steps for e in events}
    assert {(e.stage, e.step) for e in with_preview} == {
        (stage, step) for stage, count in steps.items() for step in range(1, count + 1)
        if step % 2 == 0 or step == count
    }
    for event in with_preview:
        h, w, c = event.preview.shape
        assert c == 3 and event.preview.dtype == np.uint8 and max(h, w) <= 256
        assert abs(w / h - 64 / 75) < 0.2  # the sample's aspect, padding cropped off
    assert len(with_preview) < len(events)
