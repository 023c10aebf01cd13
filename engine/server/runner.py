"""From a queued job to an engine call: load (or reuse) its model, upscale, encode in the caller's format."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from engine.api import get_backend, smaller_tiles, upscale
from engine.progress import ProgressCallback
from engine.server.codec import encode_result
from engine.server.config import ServerConfig
from engine.server.jobs import Job
from engine.settings import ModelSpec
from engine.sr.load import SR_SUFFIXES, get_sr_model, is_sr_checkpoint
from engine.sr.upscale import upscale_sr


class EngineRunner:
    """Runs jobs on the worker thread; the model stays loaded between jobs (engine.api caches the last one)."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.loaded: str | None = None  # the model the last job (or the warm-up) ran on

    def spec(self, source: str) -> ModelSpec:
        return ModelSpec(source, device=self.config.device, dtype=self.config.dtype, offload=self.config.offload,
                         base=self.config.base)

    def warmup(self) -> None:
        """Load the default model before the first job, so that job does not pay for it."""
        if self.config.model is not None:
            if is_sr_checkpoint(Path(self.config.model)):  # `uprez serve --model 4x-UltraSharp.pth`
                get_sr_model(self.config.model, device=self.config.device, dtype=self.config.dtype)
            else:
                get_backend(self.spec(self.config.model))
            self.loaded = self.config.model

    def __call__(self, job: Job, on_progress: ProgressCallback) -> tuple[bytes, dict[str, Any]]:
        request = job.request
        if request.model is None:
            raise ValueError("the server resolves every job's model before queueing it")
        job.cancel.raise_if_cancelled()
        if request.model.endswith(SR_SUFFIXES) and is_sr_checkpoint(Path(request.model)):
            return self._run_sr(job, on_progress)
        backend = get_backend(self.spec(request.model))  # switching models frees the previous one first
        self.loaded = request.model
        job.cancel.raise_if_cancelled()  # loading can take a while; a cancel meanwhile should not run the job
        settings = request.settings
        if job.attempt > 1:  # the first run ran out of memory: a quarter of the memory per tile
            settings = smaller_tiles(backend, settings)
        result = upscale(job.image, settings, backend=backend, on_progress=on_progress, cancel=job.cancel,
                         max_memory=self.config.max_memory, mask=job.mask, region_only=request.region_only,
                         preview_every=request.preview_every)
        return encode_result(np.asarray(result), request.image)

    def _run_sr(self, job: Job, on_progress: ProgressCallback) -> tuple[bytes, dict[str, Any]]:
        """An upscale model on its own (engine.sr): tiles from free memory, halved on out-of-memory."""
        request = job.request
        model = get_sr_model(request.model, device=self.config.device, dtype=self.config.dtype)
        self.loaded = request.model
        result = upscale_sr(job.image, model, scale=request.settings.scale, mask=job.mask,
                            region_only=request.region_only, tile_size=request.settings.tile_size,
                            on_progress=on_progress, cancel=job.cancel)
        return encode_result(np.asarray(result), request.image)
