"""Structure-guidance maths on small plain tensors: weights, band splits, statistics, schedules, sampler steps."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.guidance import (
    align_acceleration,
    align_direction,
    alpha_schedule,
    beta_schedule,
    butterworth_lowpass,
    cosine_decay,
    dilated_views,
    lowpass,
    match_dilated_statistics,
    match_statistics,
    merge_dilated_views,
    scale_aware_sigma,
    skip_residual,
    velocity_from_x0,
)
from engine.sampler import ancestral_step, euler, predicted_x0

few = settings(max_examples=40, deadline=None)
seeds = st.integers(0, 2**31 - 1)
sides = st.integers(2, 12)
unit = st.floats(0.0, 1.0)
sigma_starts = st.floats(0.01, 1.0)


def randn(*shape: int, seed: int, scale: float = 1.0, shift: float = 0.0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)) * scale + shift


def channel_stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    std, mean = torch.std_mean(x.double(), dim=(-2, -1), correction=0)
    return mean, std


# --- weights -----------------------------------------------------------------------------------------------


@few
@given(sigma_start=sigma_starts, power=st.floats(0.1, 6.0), a=unit, b=unit)
def test_cosine_decay_is_one_at_the_start_zero_at_the_end_and_monotone(sigma_start, power, a, b):
    assert cosine_decay(sigma_start, sigma_start, power) == 1.0
    assert cosine_decay(0.0, sigma_start, power) == pytest.approx(0.0, abs=1e-12)
    low, high = sorted((a * sigma_start, b * sigma_start))
    c_low, c_high = cosine_decay(low, sigma_start, power), cosine_decay(high, sigma_start, power)
    assert 0.0 <= c_low <= c_high <= 1.0


@pytest.mark.parametrize("power, half_way", [(1.0, 0.5), (3.0, 0.125)])
def test_cosine_decay_has_the_raised_cosine_shape(power, half_way):
    assert cosine_decay(0.2, 0.4, power) == pytest.approx(half_way)
    assert cosine_decay(0.1, 0.4, 1.0) == pytest.approx((1 + math.cos(math.pi * 0.75)) / 2)


@few
@given(sigma_start=sigma_starts, peak=unit, a=unit, b=unit)
def test_alpha_and_beta_schedules_fall_linearly_from_the_peak_to_zero(sigma_start, peak, a, b):
    for schedule in (alpha_schedule, beta_schedule):
        assert schedule(sigma_start, sigma_start, peak) == pytest.approx(peak)
        assert schedule(0.0, sigma_start, peak) == 0.0
        assert schedule(sigma_start / 2, sigma_start, peak) == pytest.approx(peak / 2)
        low, high = sorted((a * sigma_start, b * sigma_start))
        assert 0.0 <= schedule(low, sigma_start, peak) <= schedule(high, sigma_start, peak) <= peak


def test_schedule_defaults_are_hiflows_and_bad_weights_are_refused():
    assert alpha_schedule(0.35, 0.35) == 1.0 and beta_schedule(0.35, 0.35) == 0.5
    with pytest.raises(ValueError, match="sigma_start"):
        cosine_decay(0.1, 0.0)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        alpha_schedule(0.1, 0.3, peak=1.5)


# --- skip residual -----------------------------------------------------------------------------------------


@few
@given(seed=seeds, weight=unit)
def test_skip_residual_is_the_weighted_blend_and_exact_at_both_ends(seed, weight):
    x, ref = randn(1, 3, 5, 7, seed=seed), randn(1, 3, 5, 7, seed=seed + 1)
    assert torch.equal(skip_residual(x, ref, 0.0), x)
    assert torch.equal(skip_residual(x, ref, 1.0), ref)
    torch.testing.assert_close(skip_residual(x, ref, weight), weight * ref + (1 - weight) * x, atol=1e-6, rtol=0)


def test_skip_residual_refuses_a_weight_outside_the_unit_interval_and_other_shapes():
    x = torch.zeros(1, 2, 3, 3)
    with pytest.raises(ValueError, match="weight"):
        skip_residual(x, x, 1.2)
    with pytest.raises(ValueError, match="shape"):
        skip_residual(x, torch.zeros(1, 2, 3, 4), 0.5)


# --- Butterworth and direction alignment -------------------------------------------------------------------


@few
@given(height=st.integers(1, 20), width=st.integers(1, 20), cutoff=st.floats(0.05, 1.5), order=st.floats(0.5, 8))
def test_butterworth_mask_is_even_in_unit_range_one_at_dc_and_falls_with_radius(height, width, cutoff, order):
    mask = butterworth_lowpass(height, width, cutoff, order).double()
    assert mask.shape == (height, width) and mask[0, 0] == 1.0
    assert bool(((mask >= 0) & (mask <= 1)).all())
    mirrored = mask[(-torch.arange(height)) % height][:, (-torch.arange(width)) % width]
    assert torch.equal(mask, mirrored)  # even, so filtering a real tensor gives a real one
    fy, fx = 2 * torch.fft.fftfreq(height, dtype=torch.float64), 2 * torch.fft.fftfreq(width, dtype=torch.float64)
    radius = torch.sqrt(fy[:, None] ** 2 + fx[None, :] ** 2).flatten()
    by_radius = mask.flatten()[radius.argsort()]
    assert bool((by_radius[1:] <= by_radius[:-1] + 1e-7).all())


def test_butterworth_mask_is_one_half_at_the_cutoff_measured_as_a_fraction_of_nyquist():
    mask = butterworth_lowpass(10, 10, cutoff=0.2, order=4)  # fftfreq(10)[1] = 0.1 = 0.2 of Nyquist
    assert float(mask[0, 1]) == pytest.approx(0.5, abs=1e-6) and float(mask[1, 0]) == pytest.approx(0.5, abs=1e-6)
    assert float(mask[0, 5]) == pytest.approx(1 / (1 + 5.0**8), rel=1e-4)  # Nyquist: d = 1
    ideal = butterworth_lowpass(10, 10, cutoff=0.2, order=math.inf)
    assert set(ideal.unique().tolist()) == {0.0, 1.0} and float(ideal[0, 1]) == 1.0 and float(ideal[1, 1]) == 0.0


@few
@given(seed=seeds, height=sides, width=sides, alpha=unit, cutoff=st.floats(0.1, 1.0))
def test_direction_alignment_with_the_ideal_filter_splits_the_bands_exactly(seed, height, width, alpha, cutoff):
    x0_hat, ref = randn(2, 3, height, width, seed=seed), randn(2, 3, height, width, seed=seed + 1, scale=2.0)
    out = align_direction(x0_hat, ref, alpha=alpha, cutoff=cutoff, order=math.inf)
    mask = butterworth_lowpass(height, width, cutoff, math.inf)
    assert out.dtype == torch.float32 and out.shape == x0_hat.shape
    high = lambda z: z - lowpass(z, mask)  # noqa: E731
    torch.testing.assert_close(high(out), high(x0_hat), atol=2e-5, rtol=0)
    blended = (1 - alpha) * lowpass(x0_hat, mask) + alpha * lowpass(ref, mask)
    torch.testing.assert_close(lowpass(out, mask), blended, atol=2e-5, rtol=0)


@few
@given(seed=seeds, height=sides, width=sides, alpha=unit, cutoff=st.floats(0.05, 1.0), order=st.floats(1, 8))
def test_direction_alignment_blends_each_frequency_by_alpha_times_the_mask(seed, height, width, alpha, cutoff, order):
    x0_hat, ref = randn(1, 4, height, width, seed=seed), randn(1, 4, height, width, seed=seed + 1)
    out = align_direction(x0_hat, ref, alpha=alpha, cutoff=cutoff, order=order)
    weight = alpha * butterworth_lowpass(height, width, cutoff, order).double()
    spectrum = lambda z: torch.fft.fft2(z.double())  # noqa: E731
    expected = (1 - weight) * spectrum(x0_hat) + weight * spectrum(ref)
    torch.testing.assert_close(spectrum(out), expected, atol=1e-4, rtol=0)


@few
@given(seed=seeds, height=st.integers(8, 16), width=st.integers(8, 16))
def test_full_direction_alignment_gives_the_reference_mean_and_keeps_the_stop_band(seed, height, width):
    x0_hat, ref = randn(1, 2, height, width, seed=seed), randn(1, 2, height, width, seed=seed + 1, shift=3.0)
    out = align_direction(x0_hat, ref, alpha=1.0)  # HiFlow's defaults: cutoff 0.2, order 4
    torch.testing.assert_close(out.mean(dim=(-2, -1)), ref.mean(dim=(-2, -1)), atol=1e-5, rtol=0)
    stop = butterworth_lowpass(height, width) < 1e-5
    assert bool(stop.any())  # sides of 8 or more reach the stop band
    diff = (torch.fft.fft2(out.double()) - torch.fft.fft2(x0_hat.double()))[..., stop]
    assert float(diff.abs().max()) < 1e-3


def test_zero_alpha_returns_x0_hat_exactly():
    x0_hat = randn(1, 3, 6, 6, seed=3)
    assert torch.equal(align_direction(x0_hat, randn(1, 3, 6, 6, seed=4), alpha=0.0), x0_hat)


# --- acceleration alignment --------------------------------------------------------------------------------


@few
@given(seed=seeds, beta=unit)
def test_acceleration_alignment_moves_the_change_of_x0_hat_toward_the_reference_change(seed, beta):
    x0, x0_prev, ref, ref_prev = (randn(1, 2, 4, 5, seed=seed + i) for i in range(4))
    out = align_acceleration(x0, x0_prev, ref, ref_prev, beta=beta)
    expected_change = (1 - beta) * (x0 - x0_prev) + beta * (ref - ref_prev)
    torch.testing.assert_close(out - x0_prev, expected_change, atol=1e-5, rtol=0)
    assert torch.equal(align_acceleration(x0, x0_prev, ref, ref_prev, beta=0.0), x0)


def test_full_acceleration_alignment_copies_the_reference_change_and_the_accelerations_match():
    x0, x0_prev, ref, ref_prev = (randn(1, 1, 3, 3, seed=10 + i) for i in range(4))
    out = align_acceleration(x0, x0_prev, ref, ref_prev, beta=1.0)
    torch.testing.assert_close(out - x0_prev, ref - ref_prev)
    sigma, sigma_prev = 0.2, 0.3  # HiFlow's a = -(1/t_{i-1}) (x0_{i-1} - x0_i) / (t_{i-1} - t_i)
    accel = lambda new, old: -(new - old) / (sigma * (sigma - sigma_prev))  # noqa: E731
    torch.testing.assert_close(accel(out, x0_prev), accel(ref, ref_prev))


@few
@given(seed=seeds, sigma=st.floats(0.01, 1.0))
def test_velocity_from_x0_inverts_predicted_x0(seed, sigma):
    x, v = randn(1, 2, 3, 3, seed=seed), randn(1, 2, 3, 3, seed=seed + 1)
    torch.testing.assert_close(velocity_from_x0(x, predicted_x0(x, v, sigma), sigma), v, atol=2e-4, rtol=1e-4)


# --- statistical matching ----------------------------------------------------------------------------------


@few
@given(seed=seeds, height=sides, width=sides, ref_h=sides, ref_w=sides, scale=st.floats(0.1, 10),
       shift=st.floats(-5, 5))
def test_match_statistics_gives_each_channel_the_reference_mean_and_std(seed, height, width, ref_h, ref_w, scale,
                                                                        shift):
    x = randn(2, 3, height, width, seed=seed, scale=0.3, shift=1.0)
    ref = randn(2, 3, ref_h, ref_w, seed=seed + 1, scale=scale, shift=shift)
    out = match_statistics(x, ref)
    (mean, std), (ref_mean, ref_std) = channel_stats(out), channel_stats(ref)
    torch.testing.assert_close(mean, ref_mean, atol=1e-4 * (1 + abs(shift) + scale), rtol=0)
    torch.testing.assert_close(std, ref_std, atol=1e-4 * scale, rtol=1e-4)
    # An affine map per channel: the standardised pattern is x's own.
    standardise = lambda z: (z.double() - channel_stats(z)[0][..., None, None]) / channel_stats(z)[1][..., None, None]  # noqa: E731
    torch.testing.assert_close(standardise(out), standardise(x), atol=1e-3, rtol=0)


def test_a_flat_channel_takes_the_reference_mean():
    x = torch.full((1, 1, 4, 4), 2.0)
    ref = randn(1, 1, 2, 2, seed=0, shift=-1.0)
    torch.testing.assert_close(match_statistics(x, ref), torch.full_like(x, float(ref.mean())))


@few
@given(seed=seeds, factor=st.integers(1, 4), height=st.integers(4, 13), width=st.integers(4, 13))
def test_dilated_views_are_the_strided_subgrids_and_merge_back(seed, factor, height, width):
    x = randn(1, 2, height, width, seed=seed)
    views = dilated_views(x, factor)
    assert len(views) == factor**2
    assert torch.equal(views[-1], x[..., factor - 1::factor, factor - 1::factor])
    assert sum(v.numel() for v in views) == x.numel()
    assert torch.equal(merge_dilated_views(views, factor), x)


@few
@given(seed=seeds, factor=st.integers(1, 3), scale=st.floats(0.2, 5.0))
def test_dilated_matching_gives_every_view_the_reference_statistics(seed, factor, scale):
    # A smooth upsample: its strided views have shifted means and shrunk stds, as APT observes.
    small = randn(1, 3, 5, 5, seed=seed, scale=scale)
    x = torch.nn.functional.interpolate(small, scale_factor=factor, mode="bilinear", align_corners=False)
    out = match_dilated_statistics(x, small, factor)
    ref_mean, ref_std = channel_stats(small)
    for view in dilated_views(out, factor):
        mean, std = channel_stats(view)
        torch.testing.assert_close(mean, ref_mean, atol=1e-4 * (1 + scale), rtol=0)
        torch.testing.assert_close(std, ref_std, atol=1e-4 * scale, rtol=1e-4)


def test_dilation_factor_must_be_a_positive_integer_no_larger_than_the_latent():
    with pytest.raises(ValueError, match="integer"):
        dilated_views(torch.zeros(1, 1, 4, 4), 0)
    with pytest.raises(ValueError, match="exceeds"):
        match_dilated_statistics(torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 2, 2), 5)


# --- scale-aware scheduling --------------------------------------------------------------------------------


@few
@given(sigma=unit, a=st.floats(1.0, 8.0), b=st.floats(1.0, 8.0), exponent=st.floats(0.0, 2.0))
def test_scale_aware_sigma_grows_with_the_stage_factor_and_stays_in_the_unit_interval(sigma, a, b, exponent):
    small, large = sorted((a, b))
    lo = scale_aware_sigma(sigma, small, exponent=exponent)
    hi = scale_aware_sigma(sigma, large, exponent=exponent)
    assert 0.0 <= lo <= hi + 1e-12 <= 1.0 + 1e-12


@few
@given(sigma=st.floats(0.01, 0.99), factor=st.floats(1.0, 8.0), exponent=st.floats(0.1, 2.0))
def test_scale_aware_sigma_divides_the_snr_by_the_factor_ratio_to_twice_the_exponent(sigma, factor, exponent):
    shifted = scale_aware_sigma(sigma, factor, exponent=exponent)
    snr = lambda s: ((1 - s) / s) ** 2  # noqa: E731
    assert snr(shifted) == pytest.approx(snr(sigma) * (2.0 / factor) ** (2 * exponent), rel=1e-9)


@few
@given(sigma=unit, factor=st.floats(0.5, 8.0))
def test_scale_aware_sigma_is_the_identity_at_the_reference_factor_and_keeps_the_ends(sigma, factor):
    assert scale_aware_sigma(sigma, 2.0) == sigma
    assert scale_aware_sigma(sigma, 1.0, reference_factor=1.0) == sigma
    assert scale_aware_sigma(0.0, factor) == 0.0
    assert scale_aware_sigma(1.0, factor) == 1.0


def test_scale_aware_sigma_follows_apts_direction_and_keeps_a_schedule_decreasing():
    # APT's table B: smaller stage factors want less noise than 2x, larger ones more.
    assert scale_aware_sigma(0.35, 4 / 3) < scale_aware_sigma(0.35, 1.5) < 0.35 < scale_aware_sigma(0.35, 3.0)
    schedule = [0.35, 0.3, 0.22, 0.1, 0.0]
    shifted = [scale_aware_sigma(s, 3.0) for s in schedule]
    assert all(a > b for a, b in zip(shifted, shifted[1:], strict=False))
    with pytest.raises(ValueError, match="stage_factor"):
        scale_aware_sigma(0.3, 0.0)


# --- stochastic step ---------------------------------------------------------------------------------------


@few
@given(seed=seeds, sigma=st.floats(0.01, 1.0), fraction=unit)
def test_ancestral_step_without_eta_is_the_euler_step_bit_for_bit(seed, sigma, fraction):
    sigma_next = sigma * fraction
    x, v, noise = (randn(1, 3, 4, 4, seed=seed + i) for i in range(3))
    expected = euler(lambda _x, _s: v, x, [sigma, sigma_next])
    assert torch.equal(ancestral_step(x, v, sigma, sigma_next, 0.0, noise), expected)


@few
@given(seed=seeds, sigma=st.floats(0.05, 1.0), fraction=unit, eta=unit)
def test_ancestral_step_on_the_exact_path_renews_a_share_of_the_noise(seed, sigma, fraction, eta):
    sigma_next = sigma * fraction
    x0, eps, fresh = (randn(1, 2, 4, 4, seed=seed + i) for i in range(3))
    x = (1 - sigma) * x0 + sigma * eps
    out = ancestral_step(x, eps - x0, sigma, sigma_next, eta, fresh)
    expected = (1 - sigma_next) * x0 + sigma_next * (math.sqrt(1 - eta**2) * eps + eta * fresh)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)


def test_ancestral_step_keeps_the_noise_level_and_lands_on_x0_hat_at_zero():
    x0, eps, fresh = (randn(1, 1, 128, 128, seed=20 + i) for i in range(3))
    x0 = torch.zeros_like(x0)
    x, v = 0.6 * eps, eps - x0  # sigma 0.6, clean sample zero
    out = ancestral_step(x, v, 0.6, 0.3, 0.7, fresh)
    assert float(out.std()) == pytest.approx(0.3, rel=0.03)
    assert float(torch.corrcoef(torch.stack([out.flatten(), fresh.flatten()]))[0, 1]) == pytest.approx(0.7, abs=0.03)
    torch.testing.assert_close(ancestral_step(x, v, 0.6, 0.0, 0.7, fresh), predicted_x0(x, v, 0.6))
