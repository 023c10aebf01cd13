"""The flow upscale with an SR model as its first upsample (`upsampler`), on the tiny flow models."""

from __future__ import annotations

import numpy as np
import pytest

from engine.api import upscale
from engine.pixels import conventional_resize, from_image
from engine.settings import UpscaleSettings
from engine.sr import SR_STRENGTH_FACTOR, first_stage


@pytest.fixture(scope="module")
def flux(tiny_backend):
    return tiny_backend("flux-dev")


def _image(seed=0, size=(40, 32)):
    rng = np.random.default_rng(seed)
    return (rng.random((size[1], size[0], 3)) * 255).astype(np.uint8)


def test_runs_deterministically_and_differs_from_lanczos_start(flux, sr_file):
    up = str(sr_file("compact", 2))
    a = upscale(_image(), backend=flux, scale=2, seed=3, upsampler=up)
    b = upscale(_image(), backend=flux, scale=2, seed=3, upsampler=up)
    plain = upscale(_image(), backend=flux, scale=2, seed=3)
    assert a.shape == (64, 80, 3)
    np.testing.assert_array_equal(a, b)
    assert np.abs(a.astype(int) - plain.astype(int)).max() > 3
    assert not np.array_equal(a, upscale(_image(), backend=flux, scale=2, seed=4, upsampler=up))


def test_lanczos_by_name_is_the_plain_flow_byte_for_byte(flux):
    np.testing.assert_array_equal(upscale(_image(), backend=flux, scale=2, upsampler="lanczos"),
                                  upscale(_image(), backend=flux, scale=2))


def test_the_model_runs_for_the_first_stage_only(flux, sr_file, monkeypatch):
    from engine.sr import resize

    calls = []
    real = resize.sr_resize
    monkeypatch.setattr(resize, "sr_resize", lambda *a, **k: calls.append(a[2]) or real(*a, **k))
    out = upscale(_image(), backend=flux, scale=4, upsampler=str(sr_file("span", 2)))
    assert out.shape == (128, 160, 3) and len(calls) == 1


def test_outside_the_mask_stays_the_lanczos_upscale_exactly(flux, sr_file):
    image = _image(1, (64, 48))
    mask = np.zeros((48, 64), np.uint8)
    mask[10:20, 30:50] = 255
    out = upscale(image, backend=flux, scale=2, mask=mask, upsampler=str(sr_file("esrgan", 4, ".safetensors")))
    lanczos = np.round(conventional_resize(from_image(image).rgb, (128, 96)) * 255).astype(np.uint8)
    outside = conventional_resize(mask.astype(np.float32) / 255, (128, 96)) == 0
    np.testing.assert_array_equal(out[outside], lanczos[outside])
    assert np.abs(out[~outside].astype(int) - lanczos[~outside].astype(int)).max() > 3


def test_presets_refine_with_less_strength_and_an_explicit_strength_wins(flux, sr_file):
    up = str(sr_file("compact", 2))
    for preset in ("faithful", "balanced", "creative"):
        _, chosen = first_stage(UpscaleSettings(preset=preset, upsampler=up), flux)
        base = flux.presets[preset].get("strength", flux.default_strength)
        assert chosen.strength == pytest.approx(base * SR_STRENGTH_FACTOR, abs=1e-4)
    _, kept = first_stage(UpscaleSettings(strength=0.6, upsampler=up), flux)
    assert kept.strength == 0.6


def test_the_builtin_model_takes_an_upsampler_and_keeps_its_strength(sr_file):
    from engine.api import get_backend
    from engine.settings import ModelSpec

    builtin = get_backend(ModelSpec(device="cpu"))
    _, chosen = first_stage(UpscaleSettings(upsampler=str(sr_file("compact", 2))), builtin)
    assert chosen.strength is None  # trained to start from pure noise: a lower strength would be off its training
    out = upscale(_image(2, (32, 24)), backend=builtin, scale=2, upsampler=str(sr_file("compact", 2)))
    assert out.shape == (48, 64, 3)
