"""A real backend made to take a known time per call, for testing progress and ETAs.

Tiny random models cost next to nothing, and what they cost varies with the machine's load; a big model's
calls cost time in proportion to what they cover. `PacedBackend` runs the wrapped model's own calls (the
output is the model's, byte for byte) and then sleeps a fixed time per latent position, per kind of call,
so a job's real duration is known from its work and an ETA can be checked against it.
"""

from __future__ import annotations

import time
from typing import Any

import torch

from engine.backends.base import Conditioning, FlowBackend
from engine.work import WorkCosts


class PacedBackend:
    """Delegates everything to `inner`; `encode`, `decode` and `velocity` then sleep `seconds` x their latent
    positions x the kind's cost. Its `work_costs` are the same costs, so the engine's plan knows them."""

    def __init__(self, inner: FlowBackend, seconds_per_position: float, costs: WorkCosts | None = None) -> None:
        self._inner = inner
        self._seconds = seconds_per_position
        self.work_costs = costs or WorkCosts(model=1.0, encode=1.0, decode=1.0, resize=0.0, finish=0.0)
        self.calls: dict[str, int] = {"encode": 0, "decode": 0, "model": 0}

    def __getattr__(self, name: str) -> Any:  # everything else is the real model's
        return getattr(self._inner, name)

    def _pace(self, kind: str, latent: torch.Tensor) -> None:
        self.calls[kind] += 1
        positions = latent.shape[0] * latent.shape[-2] * latent.shape[-1]
        time.sleep(self._seconds * positions * getattr(self.work_costs, kind))

    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        latent = self._inner.encode(pixels)
        self._pace("encode", latent)
        return latent

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        pixels = self._inner.decode(latent)
        self._pace("decode", latent)
        return pixels

    def velocity(self, x: torch.Tensor, sigma: float, cond: Conditioning) -> torch.Tensor:
        v = self._inner.velocity(x, sigma, cond)
        self._pace("model", x)
        return v
