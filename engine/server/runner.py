"""From a queued job to an engine call: load (or reuse) its model, upscale, encode in the caller's format."""

from __future__ import annotations

from typing import Any

import numpy as np

from engine.api import get_backend, smaller_tiles, upscale
from engine.progress import ProgressCallback
from engine.server.codec import encode_result
from engine.server.config import ServerConfig
from engine.server.jobs import Job
from engine.settings import ModelSpec


class EngineRunner:
    """Runs jobs on the worker thread; the model stays loaded between jobs (engine.api caches the last one)."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.loaded: str | None = None  # the model the last job (or the warm-up) ran on
        self.lowered: dict[str, str] = {}  # model -> memory mode it was moved to after running out of memory

    def spec(self, source: str, memory: str | None = None) -> ModelSpec:
        """How `source` loads: in the mode it was lowered to after running out of memory, else the job's, else
        the server's."""
        return ModelSpec(source, device=self.config.device, dtype=self.config.dtype, offload=self.config.offload,
                         base=self.config.base, memory=self.lowered.get(source) or memory or self.config.memory)

    def lower_memory(self, job: Job) -> str | None:
        """After running out of memory with smaller tiles: the next memory mode for this job's model (kept for
        later jobs too), or None when there is none to go to."""
        from engine.memory_modes import next_mode

        model = job.request.model
        if model is None:
            return None
        try:
            backend = get_backend(self.spec(model, job.request.memory))
        except Exception:  # the model itself does not load: nothing to lower, the job's own error stands
            return None
        current = getattr(backend, "memory_mode", None)
        lower = next_mode(current) if current is not None and backend.device.type != "cpu" else None
        if lower is None:
            return None
        self.lowered[model] = lower
        return lower

    def warmup(self) -> None:
        """Load the default model before the first job, so that job does not pay for it."""
        if self.config.model is not None:
            get_backend(self.spec(self.config.model))
            self.loaded = self.config.model

    def __call__(self, job: Job, on_progress: ProgressCallback) -> tuple[bytes, dict[str, Any]]:
        request = job.request
        if request.model is None:
            raise ValueError("the server resolves every job's model before queueing it")
        job.cancel.raise_if_cancelled()
        # Switching models (or memory modes) frees the previous one first.
        backend = get_backend(self.spec(request.model, request.memory))
        self.loaded = request.model
        job.cancel.raise_if_cancelled()  # loading can take a while; a cancel meanwhile should not run the job
        settings = request.settings
        if job.attempt > 1:  # the first run ran out of memory: a quarter of the memory per tile
            settings = smaller_tiles(backend, settings)
        result = upscale(job.image, settings, backend=backend, on_progress=on_progress, cancel=job.cancel,
                         max_memory=self.config.max_memory, mask=job.mask, region_only=request.region_only,
                         preview_every=request.preview_every)
        return encode_result(np.asarray(result), request.image)
