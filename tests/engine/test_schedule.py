"""The shift rule and shortcut schedule, checked against diffusers' own scheduler."""

from itertools import pairwise

import numpy as np
import pytest
from diffusers import FlowMatchEulerDiscreteScheduler

from engine.schedule import ShiftRule, model_sigmas, remaining_sigmas, shift_sigma

FLUX_DEV = {"use_dynamic_shifting": True, "base_shift": 0.5, "max_shift": 1.15, "base_image_seq_len": 256,
            "max_image_seq_len": 4096, "shift": 3.0}
QWEN = {"use_dynamic_shifting": True, "base_shift": 0.5, "max_shift": 0.9, "base_image_seq_len": 256,
        "max_image_seq_len": 8192, "shift_terminal": 0.02, "time_shift_type": "exponential", "shift": 1.0}
SD3 = {"shift": 3.0}
SCHNELL = {"use_dynamic_shifting": False, "shift": 1.0}


@pytest.mark.parametrize("config", [FLUX_DEV, QWEN, SD3, SCHNELL], ids=["flux-dev", "qwen", "sd3", "schnell"])
@pytest.mark.parametrize("steps", [1, 4, 28])
def test_model_sigmas_match_diffusers_scheduler(config, steps):
    if steps == 1 and config.get("shift_terminal"):
        pytest.skip("diffusers divides by zero stretching a one-step schedule; see the test below")
    rule = ShiftRule.from_scheduler_config(config)
    tokens = 4096
    scheduler = FlowMatchEulerDiscreteScheduler(**config)
    base = np.linspace(1.0, 1.0 / steps, steps)
    scheduler.set_timesteps(sigmas=base, mu=rule.mu(tokens) if rule.dynamic else None)
    expected = scheduler.sigmas[:-1].numpy()
    np.testing.assert_allclose(model_sigmas(steps, rule, tokens), expected, rtol=1e-5, atol=1e-6)


def test_one_step_schedule_with_terminal_stretch_is_just_sigma_one():
    assert model_sigmas(1, ShiftRule.from_scheduler_config(QWEN), 4096) == [1.0]


def test_flux_mu_at_native_size_and_why_it_must_not_follow_the_output():
    rule = ShiftRule.from_scheduler_config(FLUX_DEV)
    assert rule.mu(4096) == pytest.approx(1.15)  # 1024² -> shift e^1.15 ≈ 3.16
    assert np.exp(rule.mu(4 * 4096)) > 20  # 2K would be shift ≈ 25: the trap DESIGN.md warns about


def test_shift_keeps_endpoints_and_order():
    rule = ShiftRule.from_scheduler_config(FLUX_DEV)
    assert shift_sigma(1.0, rule, 4096) == pytest.approx(1.0)
    assert shift_sigma(0.0, rule, 4096) == 0.0
    sig = model_sigmas(28, rule, 4096)
    assert all(a > b for a, b in pairwise(sig))


@pytest.mark.parametrize("strength", [0.05, 0.2, 0.35, 0.6, 1.0])
def test_remaining_sigmas_start_exactly_at_strength_and_end_at_zero(strength):
    rule = ShiftRule.from_scheduler_config(FLUX_DEV)
    sig = remaining_sigmas(28, strength, rule, 4096)
    assert sig[0] == strength and sig[-1] == 0.0
    assert all(a > b for a, b in pairwise(sig))
    full = model_sigmas(28, rule, 4096)
    assert sig[1:-1] == [s for s in full if s < strength - 1e-6]  # only the schedule's tail runs


def test_remaining_sigmas_zero_strength_runs_nothing():
    assert remaining_sigmas(28, 0.0, ShiftRule(), 4096) == [0.0]


@pytest.mark.parametrize("bad", [-0.1, 1.5])
def test_remaining_sigmas_rejects_bad_strength(bad):
    with pytest.raises(ValueError, match="strength"):
        remaining_sigmas(10, bad, ShiftRule(), 4096)
