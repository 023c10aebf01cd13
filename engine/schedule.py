"""Noise schedules for flow matching: pure functions of the step count and a model's shift rule."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ShiftRule:
    """A model's sigma-shift rule, read from its FlowMatchEulerDiscreteScheduler config."""

    shift: float = 1.0
    dynamic: bool = False
    base_shift: float = 0.5
    max_shift: float = 1.15
    base_seq_len: int = 256
    max_seq_len: int = 4096
    exponential: bool = True  # time_shift_type "exponential" (FLUX, Qwen) vs "linear"
    shift_terminal: float | None = None  # Qwen-Image stretches the schedule to end at this sigma
    empirical_mu: bool = False  # FLUX.2: mu from the token count and the step count (`empirical_mu`)

    @classmethod
    def from_scheduler_config(cls, config: dict[str, Any]) -> ShiftRule:
        return cls(
            shift=float(config.get("shift", 1.0)),
            dynamic=bool(config.get("use_dynamic_shifting", False)),
            base_shift=float(config.get("base_shift", 0.5) or 0.5),
            max_shift=float(config.get("max_shift", 1.15) or 1.15),
            base_seq_len=int(config.get("base_image_seq_len", 256) or 256),
            max_seq_len=int(config.get("max_image_seq_len", 4096) or 4096),
            exponential=config.get("time_shift_type", "exponential") == "exponential",
            shift_terminal=config.get("shift_terminal") or None,
        )

    def mu(self, tokens: int, steps: int = 28) -> float:
        """Resolution-dependent shift exponent, linear in the token count (FLUX `calculate_shift`)."""
        if self.empirical_mu:
            return empirical_mu(tokens, steps)
        slope = (self.max_shift - self.base_shift) / (self.max_seq_len - self.base_seq_len)
        return self.base_shift + slope * (tokens - self.base_seq_len)


def empirical_mu(tokens: int, steps: int) -> float:
    """FLUX.2's shift exponent, fitted over token and step counts (diffusers' `compute_empirical_mu`)."""
    a1, b1 = 8.73809524e-05, 1.89833333  # the fit at 10 steps
    a2, b2 = 0.00016927, 0.45666666  # at 200 steps, and for every step count above 4300 tokens
    if tokens > 4300:
        return a2 * tokens + b2
    m_200, m_10 = a2 * tokens + b2, a1 * tokens + b1
    slope = (m_200 - m_10) / 190.0
    return slope * steps + (m_200 - 200.0 * slope)


def shift_sigma(sigma: float, rule: ShiftRule, tokens: int, steps: int = 28) -> float:
    """Apply a model's shift to one sigma in (0, 1]; `tokens` is the token count `mu` is fixed at, `steps` the
    schedule's length (only FLUX.2's mu depends on it)."""
    if sigma <= 0.0:
        return 0.0
    if rule.dynamic:
        mu = rule.mu(tokens, steps)
        if rule.exponential:
            return math.exp(mu) / (math.exp(mu) + (1.0 / sigma - 1.0))
        return mu / (mu + (1.0 / sigma - 1.0))
    return rule.shift * sigma / (1.0 + (rule.shift - 1.0) * sigma)


def model_sigmas(steps: int, rule: ShiftRule, tokens: int) -> list[float]:
    """The model's own full schedule of `steps` steps from 1 towards 0, shifted, without the final 0."""
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    base = [1.0 - i * (1.0 - 1.0 / steps) / max(steps - 1, 1) for i in range(steps)] if steps > 1 else [1.0]
    shifted = [shift_sigma(s, rule, tokens, steps) for s in base]
    if rule.shift_terminal and steps > 1:  # one step is sigma 1 alone: nothing to stretch
        # Stretch so the last sigma lands on shift_terminal, as diffusers' scheduler does.
        scale = (1.0 - shifted[-1]) / (1.0 - rule.shift_terminal)
        shifted = [1.0 - (1.0 - s) / scale for s in shifted]
    return shifted


def remaining_sigmas(steps: int, sigma_start: float, rule: ShiftRule, tokens: int) -> list[float]:
    """Shortcut schedule (APT): start exactly at `sigma_start`, then the model's sigmas below it, then 0.

    Stock img2img pipelines start at the schedule entry nearest `strength`, which under a strong shift
    lands far from it; we start at `sigma_start` itself so strength means what it says.
    """
    if not 0.0 <= sigma_start <= 1.0:
        raise ValueError(f"sigma_start (strength) must be within [0, 1], got {sigma_start}")
    if sigma_start == 0.0:
        return [0.0]
    below = [s for s in model_sigmas(steps, rule, tokens) if s < sigma_start - 1e-6]
    return [sigma_start, *below, 0.0]
