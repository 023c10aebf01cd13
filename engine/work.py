"""A job's progress in work units: the one object its loops report to, and the one place events leave.

A job is planned as phases (upsample, the VAE's tile-statistics pass, encode, each denoising step, decode,
the final composite), each with an estimated cost; a phase is done in units (tiles, or one for an untiled
call). The fraction is the cost done so far over the total, so it grows with the work actually done, at
any size and any number of steps, and an ETA from the rate so far is honest from the first few percent.
Every unit is also a cancel point: a cancelled job stops between tiles, not only between steps.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import torch

from engine.progress import Cancelled, CancelToken, ProgressCallback, ProgressEvent

T = TypeVar("T")

MIN_INTERVAL_S = 0.1  # at most about ten events a second: a fast job must not flood the event stream


@dataclass(frozen=True)
class WorkCosts:
    """Relative cost of each kind of work, per latent position it covers (a model call: per call).

    What a backend declares, measured or estimated for its usual device; only the ratios matter. The
    defaults estimate a diffusers model on a GPU (a FLUX-sized transformer call against its VAE, with the
    Lanczos resizes and the final composite on the CPU); the built-in model measures its own.
    """

    model: float = 1.0  # one velocity call
    encode: float = 0.2  # VAE encode (the tile-statistics pass costs the same again)
    decode: float = 0.4  # VAE decode
    resize: float = 0.15  # Lanczos upsample of the stage's input, at the stage's size
    finish: float = 0.1  # crop, conversions, the mask composite and packing the result


@dataclass(frozen=True)
class Phase:
    """One planned piece of a job: what `begin` calls it, what the user reads, its cost, and where it is."""

    key: str
    text: str  # "decoding"; shown as "decoding tile 7/30"
    cost: float
    stage: int = 1  # 1-based, as ProgressEvent has it
    step: int = 0  # denoising steps of the stage done when this phase ends
    steps: int = 0
    sigma: float = 1.0  # noise level once this phase is done
    note: str = ""  # after the tile count: " (step 2/4)"


class Work:
    """Counts the units of a job's planned phases, turns them into one fraction, emits rate-limited
    `ProgressEvent`s, and raises `Cancelled` between units.

    `begin(key, units)` starts the planned phase `key`; phases planned before it that never began (a pass
    a model turned out not to need) count as done. A phase not in the plan costs nothing but still says
    what the job is doing. Events go out only when the fraction grows (or with a preview), and at most
    every `min_interval` seconds; `finish()` sends the last one, at exactly 1.0.
    """

    def __init__(self, phases: Sequence[Phase], stages: int, callback: ProgressCallback | None = None,
                 cancel: CancelToken | None = None, *, min_interval: float = MIN_INTERVAL_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.phases = list(phases)
        self.stages = stages
        self.callback, self.cancel = callback, cancel
        self.min_interval, self.clock = min_interval, clock
        self.total = sum(p.cost for p in self.phases) or 1.0
        self._index = -1  # the current phase in `phases`
        self._before = 0.0  # cost of the phases before the current one
        self._phase: Phase | None = None
        self._units, self._done = 1, 0
        self._last_fraction = 0.0
        self._last_time: float | None = None
        self.finished = False

    # -- what the job's loops call ----------------------------------------------------------------------
    def check(self) -> None:
        """Raise `Cancelled` if the job was cancelled."""
        if self.cancel is not None:
            self.cancel.raise_if_cancelled()

    def begin(self, key: str, units: int = 1) -> None:
        """Start the phase `key`, to be done in `units` units."""
        self.check()
        last = self._phase or Phase("", "", 0.0)
        self._close_phase()
        found = next((i for i in range(self._index + 1, len(self.phases)) if self.phases[i].key == key), None)
        if found is None:  # not planned: no share of the fraction, but its name is still the job's news
            self._phase = Phase(key, key.rsplit(":", 1)[-1], 0.0, last.stage, last.step, last.steps, last.sigma)
        else:
            self._before += sum(p.cost for p in self.phases[self._index + 1 : found])
            self._index, self._phase = found, self.phases[found]
        self._units, self._done = max(1, units), 0

    def unit(self, preview: np.ndarray | None = None) -> None:
        """One unit of the current phase done; then a cancel point."""
        self._done = min(self._done + 1, self._units)
        self._emit(preview)
        self.check()

    def preview(self, image: np.ndarray) -> None:
        """A preview of the result so far: sent at once, at the current fraction."""
        self._emit(image)

    def finish(self) -> None:
        """The job is done: one last event at exactly 1.0."""
        if self.finished:
            return
        self.finished = True
        self._last_time = None
        self._emit(None, final=True)

    # -- accounting --------------------------------------------------------------------------------------
    def _close_phase(self) -> None:
        if self._phase is not None and self._index >= 0 and self._phase is self.phases[self._index]:
            self._before += self._phase.cost
        self._phase = None

    @property
    def fraction(self) -> float:
        within = 0.0 if self._phase is None else self._phase.cost * self._done / self._units
        return min(1.0, (self._before + within) / self.total)

    def label(self) -> str:
        """What the job is doing now: the unit in progress, "decoding tile 8/30"."""
        phase = self._phase
        if phase is None:
            return "done"
        prefix = f"stage {phase.stage}/{self.stages}: " if self.stages > 1 and "reference" not in phase.text else ""
        tiles = f" tile {min(self._done + 1, self._units)}/{self._units}" if self._units > 1 else ""
        return f"{prefix}{phase.text}{tiles}{phase.note}"

    def _emit(self, preview: np.ndarray | None, final: bool = False) -> None:
        if self.callback is None:
            return
        fraction = 1.0 if final else min(self.fraction, 1.0 - 1e-9)  # only the last event says 1.0
        now = self.clock()
        if preview is None and not final:
            if fraction <= self._last_fraction:
                return  # fractions only grow: nothing new to say
            if self._last_time is not None and now - self._last_time < self.min_interval:
                return
        self._last_fraction, self._last_time = max(fraction, self._last_fraction), now
        phase = self._phase or (self.phases[-1] if self.phases else Phase("", "", 0.0))
        step = phase.steps if final else phase.step
        sigma = 0.0 if final else phase.sigma
        self.callback(ProgressEvent(phase.stage if not final else self.stages, self.stages, step, phase.steps,
                                    fraction, sigma, preview, "done" if final else self.label()))


@contextmanager
def cancel_between_layers(cancel: CancelToken | None) -> Iterator[None]:
    """Inside the block, a cancel also stops this thread's job before the next layer of any torch module.

    One tile of a big model call (or of the built-in model on a 27 MP photo) can take seconds; checking
    only between tiles would leave a cancelled job running that long. A global forward pre-hook costs a
    flag read per module call and changes no number; other threads' modules are left alone.
    """
    if cancel is None:
        yield
        return
    thread = threading.get_ident()

    def check(_module: torch.nn.Module, _args: Any) -> None:
        if cancel.cancelled and threading.get_ident() == thread:
            raise Cancelled("the job was cancelled")

    handle = torch.nn.modules.module.register_module_forward_pre_hook(check)
    try:
        yield
    finally:
        handle.remove()


def counted(items: Iterable[T], work: Work | None) -> Iterator[T]:
    """Yield `items`, counting one unit of `work` as each is made (and so checking for a cancel between them).

    Counted before it is handed on: a consumer such as `zip` may never ask past the last item. A cancel is
    also looked for before each item is made, so a cancelled job does not start another tile."""
    iterator = iter(items)
    while True:
        if work is not None:
            work.check()
        try:
            item = next(iterator)
        except StopIteration:
            return
        if work is not None:
            work.unit()
        yield item
