"""Presets: each model maps faithful / balanced / creative to its own settings; explicit settings win."""

from __future__ import annotations

import numpy as np
import pytest

from engine import upscale
from engine.errors import InvalidInput
from engine.settings import PRESETS, UpscaleSettings


@pytest.fixture
def small(sample_image):
    return np.asarray(sample_image.resize((32, 24)))


@pytest.mark.parametrize("preset", PRESETS)
def test_a_preset_gives_the_same_bytes_as_its_settings_spelled_out(tiny_backend, small, preset):
    backend = tiny_backend("flux-dev")
    spelled = backend.presets[preset]
    with_preset = upscale(small, backend=backend, preset=preset, seed=3)
    explicit = upscale(small, backend=backend, seed=3, **spelled)
    np.testing.assert_array_equal(with_preset, explicit)


def test_presets_differ_and_an_explicit_strength_wins(tiny_backend, small):
    backend = tiny_backend("flux-dev")
    faithful, creative = (upscale(small, backend=backend, preset=p, seed=3) for p in ("faithful", "creative"))
    assert not np.array_equal(faithful, creative)
    # A creative job that spells out the faithful strength differs from faithful only by the guidance.
    mixed = upscale(small, backend=backend, preset="creative", strength=0.25, direction_alignment=1.0, seed=3)
    np.testing.assert_array_equal(mixed, faithful)


def test_the_builtin_model_keeps_its_defaults_for_faithful_and_takes_its_detailed_mode_for_creative():
    from engine.backends.loader import load_backend
    from engine.recipe import resolve

    builtin = load_backend("builtin", device="cpu")

    def recipe(**settings):
        return resolve(UpscaleSettings(**settings), builtin, size=(32, 24))

    assert recipe(preset="faithful") == recipe() == recipe(preset="balanced")
    assert recipe().cfg_scale == 0.0  # faithful: no detail weights
    assert recipe(preset="creative").cfg_scale == 1.0  # the detail weights, at the scale they were trained at
    assert recipe(preset="creative", cfg_scale=0.5).cfg_scale == 0.5
    assert recipe(preset="creative").steps == recipe().steps == 1


def test_an_unknown_preset_is_refused_with_the_choices():
    with pytest.raises(InvalidInput, match="faithful, balanced, creative"):
        UpscaleSettings(preset="vivid")
