"""Progress events and cancellation: the one place a running job talks back to its caller."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


class Cancelled(Exception):
    """Raised inside a job when its cancel token fires; the job returns nothing."""


@dataclass(frozen=True)
class ProgressEvent:
    """Where a job is: in the stage plan, overall, and what it is doing now.

    Sent as work units (tiles, VAE tiles, passes) complete, at most about ten a second (engine.work).
    `step` counts the stage's denoising steps done; `phase` says what runs now ("decoding tile 7/30").
    """

    stage: int  # 1-based
    stages: int
    step: int  # 1-based within the stage
    steps: int
    fraction: float  # overall, by estimated cost of the work done, increasing; exactly 1.0 on the last event
    sigma: float  # noise level reached by the steps done
    preview: np.ndarray | None = None  # small (h, w, 3) uint8 look at the predicted result, when asked for
    phase: str = ""  # what the job is doing now, for people: "stage 2/2: decoding tile 7/30"


ProgressCallback = Callable[[ProgressEvent], None]


class CancelToken:
    """Thread-safe flag a caller sets to stop a job at its next work unit (a tile, a VAE tile, a step)."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def raise_if_cancelled(self) -> None:
        if self._event.is_set():
            raise Cancelled("the job was cancelled")
