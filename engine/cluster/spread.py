"""One job's tile batches over several workers (issue 19): within each step, the batches are cut into contiguous
shares, one per worker; this worker computes the first share while the others compute theirs, and the velocities
come back in the batches' order, so `engine.tile_grid.fuse_tiles` adds them up exactly as on one worker.

Each batch is the same model call with the same inputs (the same tiles stacked the same way, the same cropped
conditioning) on the same weights, so on the CPU the fused field has the same bytes as on one worker
(tests/cluster/test_tiles_split.py); on GPUs too when the workers' devices and kernels are the same.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import suppress
from typing import Any

import ray
import torch

from engine.backends.base import Conditioning, FlowBackend
from engine.progress import Cancelled, CancelToken
from engine.settings import ModelSpec
from engine.tile_grid import Window

WAIT_S = 0.1  # how often a wait on another worker looks at the job's cancel


def shares(count: int, workers: int) -> list[range]:
    """`count` batches cut into at most `workers` contiguous shares whose sizes differ by at most one."""
    workers = max(1, min(workers, count))
    size, extra = divmod(count, workers)
    starts = [i * size + min(i, extra) for i in range(workers + 1)]
    return [range(a, b) for a, b in zip(starts, starts[1:], strict=False)]


class TileSpread:
    """engine.tiled_model.TILE_BATCHES for a job on a worker: its batches shared with `helpers` (other workers)."""

    def __init__(self, helpers: Sequence[Any], spec: ModelSpec, cancel: CancelToken | None = None) -> None:
        self.helpers, self.spec, self.cancel = list(helpers), spec, cancel

    def __call__(self, backend: FlowBackend, x: torch.Tensor, sigma: float, cond: Conditioning,
                 groups: Sequence[list[Window]], local: Callable[[list[Window]], torch.Tensor]
                 ) -> Iterator[torch.Tensor]:
        parts = shares(len(groups), 1 + len(self.helpers))
        asked = []  # (share, the helper, its pending answer), sent before this worker starts on its own share
        for share, helper in zip(parts[1:], self.helpers, strict=False):
            batches = [(torch.cat([x[(..., *w.slices)] for w in groups[i]]).cpu(),
                        backend.crop_condition(cond, groups[i])) for i in share]
            asked.append((share, helper.velocities.remote(self.spec, sigma, batches)))
        yield from (local(groups[i]) for i in parts[0])
        for share, answer in asked:
            values = self._wait(answer)
            if values is None:  # declined (it holds another model) or gone: this worker computes the share
                yield from (local(groups[i]) for i in share)
            else:
                yield from (value.to(x.device) for value in values)

    def _wait(self, answer: Any) -> list[torch.Tensor] | None:
        """A helper's answer, looking at the job's cancel meanwhile; None if the helper could not give one."""
        while not ray.wait([answer], timeout=WAIT_S)[0]:
            if self.cancel is not None and self.cancel.cancelled:
                # A batch already running on the helper ends by itself; its answer is dropped.
                with suppress(ray.exceptions.RayError, TypeError, ValueError):
                    ray.cancel(answer)
                raise Cancelled("the job was cancelled")
        try:
            return ray.get(answer)
        except ray.exceptions.RayError:  # its worker died past its retries: the share is recomputed here
            return None
