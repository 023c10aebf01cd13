"""The Euler loop and re-noise formula on plain tensors, with exact velocity fields."""

import pytest
import torch

from engine.progress import Cancelled, CancelToken
from engine.sampler import euler, predicted_x0, renoise


def test_renoise_is_the_flow_interpolation():
    x0, eps = torch.randn(2, 4, 8, 8), torch.randn(2, 4, 8, 8)
    assert torch.allclose(renoise(x0, eps, 0.3), 0.7 * x0 + 0.3 * eps)
    assert torch.equal(renoise(x0, eps, 0.0), x0)
    assert torch.equal(renoise(x0, eps, 1.0), eps)


@pytest.mark.parametrize("sigmas", [[0.4, 0.0], [0.6, 0.45, 0.2, 0.05, 0.0], [1.0, 0.7, 0.3, 0.0]])
def test_euler_recovers_x0_with_the_exact_velocity(sigmas):
    x0, eps = torch.randn(1, 16, 8, 8), torch.randn(1, 16, 8, 8)
    calls = []

    def velocity(x, sigma):
        calls.append(sigma)
        assert torch.allclose(x, renoise(x0, eps, sigma), atol=1e-5)  # we stay on the straight path
        return eps - x0

    out = euler(velocity, renoise(x0, eps, sigmas[0]), sigmas)
    assert torch.allclose(out, x0, atol=1e-5)
    assert calls == sigmas[:-1]


def test_predicted_x0_inverts_the_interpolation():
    x0, eps = torch.randn(3, 5), torch.randn(3, 5)
    assert torch.allclose(predicted_x0(renoise(x0, eps, 0.37), eps - x0, 0.37), x0, atol=1e-6)


def test_euler_with_a_single_sigma_is_identity():
    x = torch.randn(1, 4, 4, 4)
    assert torch.equal(euler(lambda *_: pytest.fail("no model call expected"), x, [0.0]), x)


def test_cancel_stops_within_one_step():
    cancel = CancelToken()
    calls = 0

    def velocity(x, sigma):
        nonlocal calls
        calls += 1
        if calls == 2:
            cancel.cancel()
        return torch.zeros_like(x)

    with pytest.raises(Cancelled):
        euler(velocity, torch.zeros(1), [0.9, 0.7, 0.5, 0.3, 0.1, 0.0], cancel=cancel)
    assert calls == 2  # the step in flight finishes, no further model call starts


def test_on_step_reports_each_step_in_order():
    seen = []
    euler(lambda x, s: torch.zeros_like(x), torch.zeros(1), [0.5, 0.25, 0.0],
          on_step=lambda i, s, x: seen.append((i, s)))
    assert seen == [(0, 0.25), (1, 0.0)]
