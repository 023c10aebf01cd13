"""`ModelWorker`: the Ray actor that holds one loaded model (its own `ModelCache`, through `EngineRunner`).

Three concurrency groups, one thread each, so that no call waits on another kind:
- "job": whole jobs (a server job, or one image of a folder batch), one at a time;
- "tiles": tile batches of another worker's job (engine/cluster/spread.py), beside this worker's own job, so two
  jobs that each spread their tiles over the other's worker cannot wait on each other;
- "control": progress polls, cancels, the process id.

Started with Ray's actor restarts and task retries: a worker that dies (killed, out of host memory) is replaced,
and the job or tile batch it was running is run again on the new one from its inputs, which Ray kept.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import ray
import torch

from engine.cluster.start import ClusterPlan
from engine.progress import CancelToken, ProgressEvent
from engine.server.config import ServerConfig
from engine.settings import ModelSpec, UpscaleSettings

# A job whose worker dies this many times more fails (a job that kills every worker it runs on must end).
JOB_RETRIES = 3
GROUPS = {"job": 1, "tiles": 1, "control": 1}


@dataclass
class _Running:
    """A job on this worker: its cancel token and the progress events not yet polled."""

    cancel: CancelToken = field(default_factory=CancelToken)
    events: list[ProgressEvent] = field(default_factory=list)
    done: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    def on_progress(self, event: ProgressEvent) -> None:
        with self.lock:
            self.events.append(event)

    def take(self) -> list[ProgressEvent]:
        with self.lock:
            events, self.events = self.events, []
        return events


class ModelWorker:
    """One model on one device (a GPU, or CPU threads), serving jobs and other jobs' tile batches."""

    def __init__(self, config: ServerConfig, threads: int) -> None:
        from engine.server.runner import EngineRunner

        if threads:  # a CPU worker: Ray's CPU share (a GPU worker keeps torch's own choice)
            torch.set_num_threads(threads)
        self.runner = EngineRunner(config)
        self.lock = threading.Lock()  # held while a tile batch computes, and while a job says what it runs
        # This worker's own job: its flow model (None: an upscale model), and whether it has LoRAs.
        self.busy: tuple[ModelSpec | None, bool] | None = None
        self.jobs: dict[str, _Running] = {}
        self.cancelled: set[str] = set()  # cancels that came before their job (or before a restarted run of it)
        self.helped = 0  # tile batches computed for other workers' jobs

    # -- jobs -------------------------------------------------------------------------------------------------
    @ray.method(concurrency_group="job")
    def warmup(self) -> str | None:
        self.runner.warmup()
        return self.runner.loaded

    @ray.method(concurrency_group="job")
    def unload(self) -> None:
        self.runner.unload()

    @ray.method(concurrency_group="job")
    def run(self, job_id: str, request: Any, image: np.ndarray, mask: np.ndarray | None, attempt: int,
            helpers: list[Any]) -> tuple[bytes, dict[str, Any]]:
        """A server job (engine.server.runner.EngineRunner's call), its tiles spread over `helpers`."""
        from engine.server.jobs import Job
        from engine.sr.load import SR_SUFFIXES

        running = self._begin(job_id)
        job = Job(job_id, request, image, mask, cancel=running.cancel, attempt=attempt)
        flow = request.model is not None and not request.model.endswith(SR_SUFFIXES)
        spec = self.runner.spec(request.model, request.memory) if flow else None
        with self._job(spec, bool(request.settings.loras), helpers, running.cancel):
            try:
                return self.runner(job, running.on_progress)
            finally:
                running.done = True

    @ray.method(concurrency_group="job")
    def upscale(self, job_id: str, pixels: np.ndarray, settings: UpscaleSettings, model: str, options: dict[str, Any],
                helpers: list[Any]) -> tuple[str, np.ndarray]:
        """One image of a folder batch (`uprez upscale DIR --cluster`): engine.api.upscale on this worker's model;
        the job id comes back with the result (Ray's ActorPool hands results back in the order they finish)."""
        from engine.api import upscale

        running = self._begin(job_id)
        spec = self.runner.spec(model)
        with self._job(spec, bool(settings.loras), helpers, running.cancel):
            try:
                backend = self.runner.models.get(spec)
                return job_id, np.asarray(upscale(pixels, settings, backend=backend, cancel=running.cancel,
                                                  on_progress=running.on_progress, **options))
            finally:
                running.done = True

    def _begin(self, job_id: str) -> _Running:
        running = self.jobs[job_id] = _Running()
        if job_id in self.cancelled:
            running.cancel.cancel()
        return running

    def _job(self, spec: ModelSpec | None, loras: bool, helpers: list[Any], cancel: CancelToken) -> _JobScope:
        return _JobScope(self, spec, loras, helpers, cancel)

    # -- tiles of another worker's job ---------------------------------------------------------------------
    @ray.method(concurrency_group="tiles")
    def velocities(self, spec: ModelSpec, sigma: float, batches: list[tuple[torch.Tensor, Any]]
                   ) -> list[torch.Tensor] | None:
        """The model's velocity of each (tiles, cropped conditioning) batch, as the asking worker would compute
        it; None (the asker computes them itself) while this worker's own job holds another model or LoRAs."""
        with self.lock:
            if self.busy is not None and (self.busy[0] is None or self.busy[0] != spec or self.busy[1]):
                return None
            backend = self.runner.models.get(spec)  # loads it on an idle worker that has none yet
            if getattr(backend, "lora_slots", None) is not None:  # LoRAs were applied here: not the asker's weights
                return None
            out = [backend.velocity(tiles.to(backend.device), sigma, cond).cpu() for tiles, cond in batches]
            self.helped += len(batches)
            return out

    # -- control -------------------------------------------------------------------------------------------
    @ray.method(concurrency_group="control")
    def poll(self, job_id: str) -> list[ProgressEvent]:
        """The job's progress events since the last poll; a finished job's last poll forgets it."""
        running = self.jobs.get(job_id)
        if running is None:
            return []
        events = running.take()
        if running.done:
            self.jobs.pop(job_id, None)
            self.cancelled.discard(job_id)
        return events

    @ray.method(concurrency_group="control")
    def cancel(self, job_id: str) -> None:
        self.cancelled.add(job_id)
        running = self.jobs.get(job_id)
        if running is not None:
            running.cancel.cancel()

    @ray.method(concurrency_group="control")
    def stats(self) -> dict[str, Any]:
        return {"pid": os.getpid(), "helped": self.helped, "loaded": self.runner.loaded}


class _JobScope:
    """While a job runs: the worker says what model it holds (so tile requests for another are declined), and
    its tile batches go to `helpers` (engine.tiled_model.TILE_BATCHES) unless it has LoRAs."""

    def __init__(self, worker: ModelWorker, spec: ModelSpec | None, loras: bool, helpers: list[Any],
                 cancel: CancelToken) -> None:
        self.worker, self.spec, self.loras, self.helpers, self.cancel = worker, spec, loras, helpers, cancel
        self.token: Any = None

    def __enter__(self) -> None:
        from engine.cluster.spread import TileSpread
        from engine.tiled_model import TILE_BATCHES

        with self.worker.lock:  # waits for a tile batch in progress: a LoRA job must not change its weights
            self.worker.busy = (self.spec, self.loras)
        if self.spec is not None and self.helpers and not self.loras:
            self.token = TILE_BATCHES.set(TileSpread(self.helpers, self.spec, self.cancel))

    def __exit__(self, *_exc: object) -> None:
        from engine.tiled_model import TILE_BATCHES

        if self.token is not None:
            TILE_BATCHES.reset(self.token)
        with self.worker.lock:
            self.worker.busy = None


def start_workers(plan: ClusterPlan, config: ServerConfig) -> list[Any]:
    """The plan's model workers, each restarted by Ray when its process dies. They run in Ray's environment: on
    a local Ray, this process's at its start (UPREZ_* settings included); on a cluster, each machine's own."""
    actor = ray.remote(concurrency_groups=GROUPS)(ModelWorker).options(
        num_cpus=plan.cpus_each, num_gpus=plan.gpus_each, max_restarts=-1, max_task_retries=JOB_RETRIES)
    threads = 0 if plan.gpus_each else int(plan.cpus_each)
    return [actor.remote(config, threads) for _ in range(plan.workers)]
