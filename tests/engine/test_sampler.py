"""The samplers and the re-noise formula on plain tensors, with exact velocity fields."""

import functools
import math
from itertools import pairwise

import pytest
import torch

from engine.field import held
from engine.progress import Cancelled, CancelToken
from engine.sampler import euler, euler_ancestral, heun, model_calls, predicted_x0, renoise

# Every sampler as (velocity, x, sigmas, **kw) -> x; ancestral at eta 0 must be Euler exactly.
SAMPLERS = {"euler": euler, "heun": heun,
            "euler_ancestral": functools.partial(euler_ancestral, eta=0.5, generator=torch.Generator().manual_seed(0))}


def test_renoise_is_the_flow_interpolation():
    x0, eps = torch.randn(2, 4, 8, 8), torch.randn(2, 4, 8, 8)
    assert torch.allclose(renoise(x0, eps, 0.3), 0.7 * x0 + 0.3 * eps)
    assert torch.equal(renoise(x0, eps, 0.0), x0)
    assert torch.equal(renoise(x0, eps, 1.0), eps)


@pytest.mark.parametrize("name", ["euler", "heun"])
@pytest.mark.parametrize("sigmas", [[0.4, 0.0], [0.6, 0.45, 0.2, 0.05, 0.0], [1.0, 0.7, 0.3, 0.0]])
def test_deterministic_samplers_recover_x0_with_the_exact_velocity(name, sigmas):
    x0, eps = torch.randn(1, 16, 8, 8), torch.randn(1, 16, 8, 8)
    calls = []

    def velocity(x, sigma):
        calls.append(sigma)
        assert torch.allclose(x, renoise(x0, eps, sigma), atol=1e-5)  # we stay on the straight path
        return eps - x0

    out = SAMPLERS[name](velocity, renoise(x0, eps, sigmas[0]), sigmas)
    assert torch.allclose(out, x0, atol=1e-5)
    # Heun evaluates again at each next sigma but 0
    assert calls == (sigmas[:-1] if name == "euler" else [s for a, b in pairwise(sigmas) for s in (a, b) if s])
    assert len(calls) == sum(model_calls(name, b) for b in sigmas[1:])


def test_predicted_x0_inverts_the_interpolation():
    x0, eps = torch.randn(3, 5), torch.randn(3, 5)
    assert torch.allclose(predicted_x0(renoise(x0, eps, 0.37), eps - x0, 0.37), x0, atol=1e-6)


@pytest.mark.parametrize("name", SAMPLERS)
def test_a_single_sigma_is_identity(name):
    x = torch.randn(1, 4, 4, 4)
    assert torch.equal(SAMPLERS[name](lambda *_: pytest.fail("no model call expected"), x, [0.0]), x)


@pytest.mark.parametrize("name", SAMPLERS)
def test_outside_a_hold_every_sampler_follows_the_reference_path_exactly_as_euler_does(name):
    """The mask hold is a wrapper, so it holds under any sampler: where it is False the state moves exactly as
    the plain Euler loop moves the reference, whatever the velocity inside."""
    latent, eps = torch.randn(1, 4, 8, 8), torch.randn(1, 4, 8, 8)
    hold = torch.zeros(8, 8, dtype=torch.bool)
    hold[2:5, 3:7] = True
    sigmas = [0.7, 0.5, 0.3, 0.1, 0.0]
    velocity = held(lambda x, s: torch.sin(3 * x) * s, hold, eps - latent)
    start = renoise(latent, eps, sigmas[0])
    out = SAMPLERS[name](velocity, start, sigmas) if name != "euler_ancestral" else euler(velocity, start, sigmas)
    reference = euler(lambda x, s: eps - latent, start, sigmas)
    assert torch.equal(out[..., ~hold], reference[..., ~hold])
    assert not torch.equal(out[..., hold], reference[..., hold])


def test_heun_is_second_order():
    """dx/dsigma = -x has x(0) = x(1) e; Heun's error falls with the step squared, Euler's with the step."""
    x1 = torch.ones(1)
    errors = {}
    for name in ("euler", "heun"):
        errors[name] = [abs(float(SAMPLERS[name](lambda x, s: -x, x1, [1.0 - i / n for i in range(n)] + [1e-9])[0])
                            - math.exp(1 - 1e-9)) for n in (10, 20)]
    assert errors["euler"][0] / errors["euler"][1] == pytest.approx(2.0, rel=0.15)
    assert errors["heun"][0] / errors["heun"][1] == pytest.approx(4.0, rel=0.15)


def test_euler_ancestral_renews_noise_seeded_and_is_euler_at_eta_zero():
    x0, eps = torch.randn(1, 4, 8, 8), torch.randn(1, 4, 8, 8)
    sigmas = [0.8, 0.5, 0.2, 0.0]
    exact = lambda x, s: (x - x0) / s  # noqa: E731 - the velocity whose x0_hat is x0 from anywhere
    start = renoise(x0, eps, sigmas[0])

    def run(eta, seed):
        return euler_ancestral(exact, start, sigmas, eta=eta, generator=torch.Generator().manual_seed(seed))

    assert torch.equal(run(0.0, 1), euler(exact, start, sigmas))
    assert torch.equal(run(0.6, 1), run(0.6, 1))
    assert torch.allclose(run(0.6, 2), x0, atol=1e-5)  # the last step lands on x0_hat
    seen = []
    euler_ancestral(exact, start, sigmas, eta=0.6, generator=torch.Generator().manual_seed(1), on_step=seen.append)
    assert not torch.allclose(seen[0].x_next, renoise(x0, eps, 0.5), atol=1e-3)  # fresh noise joined the path


@pytest.mark.parametrize("name", SAMPLERS)
def test_cancel_stops_within_one_step(name):
    cancel = CancelToken()
    calls = 0

    def velocity(x, sigma):
        nonlocal calls
        calls += 1
        if calls == 2:
            cancel.cancel()
        return torch.zeros_like(x)

    with pytest.raises(Cancelled):
        SAMPLERS[name](velocity, torch.zeros(1), [0.9, 0.7, 0.5, 0.3, 0.1, 0.0], cancel=cancel)
    assert calls == 2  # the call in flight finishes, no further model call starts


@pytest.mark.parametrize("name", SAMPLERS)
def test_on_step_reports_each_step_in_order_with_its_x0_hat(name):
    x0, eps = torch.randn(1, 3), torch.randn(1, 3)
    seen = []
    SAMPLERS[name](lambda x, s: (x - x0) / s, renoise(x0, eps, 0.5), [0.5, 0.25, 0.0], on_step=seen.append)
    assert [(step.index, step.sigma, step.sigma_next) for step in seen] == [(0, 0.5, 0.25), (1, 0.25, 0.0)]
    for step in seen:
        torch.testing.assert_close(step.denoised, x0)


def test_prepare_moves_the_state_each_step_starts_from():
    moved = []
    prepare = lambda x, s: (moved.append(s), x + 1.0)[1]  # noqa: E731
    out = euler(lambda x, s: torch.zeros_like(x), torch.zeros(1), [0.5, 0.25, 0.0], prepare=prepare)
    assert moved == [0.5, 0.25] and float(out[0]) == 2.0
