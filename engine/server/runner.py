"""From a queued job to an engine call: load (or reuse) its model, upscale, encode in the caller's format."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from engine.api import smaller_tiles, upscale
from engine.backends.cache import ModelCache
from engine.progress import ProgressCallback
from engine.server.codec import encode_result
from engine.server.config import ServerConfig
from engine.server.idle import trim_heap
from engine.server.jobs import Job, free_memory
from engine.settings import ModelSpec
from engine.sr.load import SR_SUFFIXES, get_sr_model, is_sr_checkpoint
from engine.sr.upscale import upscale_sr


class EngineRunner:
    """Runs jobs on the worker thread; the model stays loaded between jobs (`models` keeps the last one)."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.models = ModelCache()
        self.loaded: str | None = None  # the model the last job (or the warm-up) ran on
        self.lowered: dict[str, str] = {}  # model -> memory mode it was moved to after running out of memory

    def spec(self, source: str, memory: str | None = None) -> ModelSpec:
        """How `source` loads: in the mode it was lowered to after running out of memory, else the job's, else
        the server's."""
        return ModelSpec(source, device=self.config.device, dtype=self.config.dtype, offload=self.config.offload,
                         base=self.config.base, memory=self.lowered.get(source) or memory or self.config.memory,
                         quantize=self.config.quantize)

    def lower_memory(self, job: Job) -> str | None:
        """After running out of memory with smaller tiles: the next memory mode for this job's model (kept for
        later jobs too), or None when there is none to go to."""
        from engine.memory_modes import next_mode

        model = job.request.model
        if model is None:
            return None
        try:
            backend = self.models.get(self.spec(model, job.request.memory))
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
            if is_sr_checkpoint(Path(self.config.model)):  # `uprez serve --model 4x-UltraSharp.pth`
                get_sr_model(self.config.model, device=self.config.device, dtype=self.config.dtype)
            else:
                self.models.get(self.spec(self.config.model))
            self.loaded = self.config.model

    def unload(self) -> None:
        """Drop the loaded model and give its memory back (the idle engine's unload; the next job reloads it)."""
        self.loaded = None
        self.models.release()
        free_memory()  # gc, then torch.cuda.empty_cache() (and MPS's) where there is one
        trim_heap()

    def __call__(self, job: Job, on_progress: ProgressCallback) -> tuple[bytes, dict[str, Any]]:
        request = job.request
        if request.model is None:
            raise ValueError("the server resolves every job's model before queueing it")
        job.cancel.raise_if_cancelled()
        if request.model.endswith(SR_SUFFIXES) and is_sr_checkpoint(Path(request.model)):
            return self._run_sr(job, on_progress)
        # Switching models (or memory modes) frees the previous one first.
        backend = self.models.get(self.spec(request.model, request.memory))
        self.loaded = request.model
        job.cancel.raise_if_cancelled()  # loading can take a while; a cancel meanwhile should not run the job
        settings = request.settings
        if job.attempt > 1:  # the first run ran out of memory: a quarter of the memory per tile
            settings = smaller_tiles(backend, settings)
        result = upscale(job.image, settings, backend=backend, on_progress=on_progress, cancel=job.cancel,
                         max_memory=self.config.max_memory, mask=job.mask, region_only=request.region_only,
                         preview_every=request.preview_every, icc_profile=request.photo.icc)
        return encode_result(np.asarray(result), request.image, request.photo)

    def _run_sr(self, job: Job, on_progress: ProgressCallback) -> tuple[bytes, dict[str, Any]]:
        """An upscale model on its own (engine.sr): tiles from free memory, halved on out-of-memory."""
        request = job.request
        model = get_sr_model(request.model, device=self.config.device, dtype=self.config.dtype)
        self.loaded = request.model
        result = upscale_sr(job.image, model, scale=request.settings.scale, mask=job.mask,
                            region_only=request.region_only, tile_size=request.settings.tile_size,
                            on_progress=on_progress, cancel=job.cancel)
        # The pixels stay in the image's own colour space (the SR model runs on them as they are), so the
        # profile and metadata go back with them.
        return encode_result(np.asarray(result), request.image, request.photo)


def make_runner(config: ServerConfig) -> EngineRunner | Any:
    """The runner `config` asks for: the model in this process, or on a Ray cluster's workers (engine/cluster)."""
    if config.cluster is not None:
        from engine.cluster.runner import ClusterRunner

        return ClusterRunner(config)
    return EngineRunner(config)
