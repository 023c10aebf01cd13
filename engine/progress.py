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
    """One denoising step done: where we are in the stage plan and overall."""

    stage: int  # 1-based
    stages: int
    step: int  # 1-based within the stage
    steps: int
    fraction: float  # overall, monotone, exactly 1.0 on the last event
    sigma: float  # noise level reached by this step
    preview: np.ndarray | None = None  # small (h, w, 3) uint8 look at the predicted result, when asked for


ProgressCallback = Callable[[ProgressEvent], None]


class CancelToken:
    """Thread-safe flag a caller sets to stop a job at the next step boundary."""

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
