"""The server's runner on a Ray cluster (`uprez serve --cluster`): the server stays the front door (the same HTTP
API and token, engine.server), and each job runs on a free `ModelWorker` with its tiles spread over the others.

The job queue (engine/cluster/queue.py) calls this runner from one thread per worker; a calling thread takes a
free worker, hands it the job, forwards its progress to the queue's callback and the queue's cancel to it.
Ray's actor restarts and task retries re-run a job whose worker died; the queue never hears of it, but its
progress starts over.
"""

from __future__ import annotations

import queue
from dataclasses import replace
from typing import Any

import ray

from engine.cluster.queue import ClusterQueue
from engine.cluster.start import connect, import_ray
from engine.cluster.worker import start_workers
from engine.progress import ProgressCallback
from engine.server.config import ServerConfig
from engine.server.jobs import Job

POLL_S = 0.1  # progress and cancel are passed on this often


class ClusterRunner:
    """`engine.server.jobs.Runner` over Ray workers; `job_queue` is the queue class the app makes for it."""

    job_queue = ClusterQueue

    def __init__(self, config: ServerConfig) -> None:
        import_ray()
        self.owns_ray = not ray.is_initialized()
        plan = connect(config.cluster or "auto", config.cluster_workers)
        self.config = config
        self.workers = start_workers(plan, replace(config, cluster=None))
        self.free: queue.Queue[Any] = queue.Queue()  # a worker with no job; a job's thread waits for one
        for worker in self.workers:
            self.free.put(worker)
        self.running: dict[str, Any] = {}  # job id -> its worker (tests kill it)
        self.loaded: str | None = None

    def warmup(self) -> None:
        """Every worker loads the default model at once (in parallel, one device each)."""
        loaded = ray.get([worker.warmup.remote() for worker in self.workers])
        self.loaded = loaded[0] if loaded else None

    def unload(self) -> None:
        ray.get([worker.unload.remote() for worker in self.workers])
        self.loaded = None

    def lower_memory(self, job: Job) -> str | None:
        return None  # each worker's memory mode is the server's: smaller tiles are the cluster's one retry

    def __call__(self, job: Job, on_progress: ProgressCallback) -> tuple[bytes, dict[str, Any]]:
        job.cancel.raise_if_cancelled()
        worker = self.free.get()
        self.running[job.id] = worker
        try:
            helpers = [other for other in self.workers if other is not worker]
            answer = worker.run.remote(job.id, job.request, job.image, job.mask, job.attempt, helpers)
            result = follow(worker, job.id, answer, on_progress, job.cancel)
            self.loaded = job.request.model
            return result
        finally:
            self.running.pop(job.id, None)
            self.free.put(worker)

    def close(self) -> None:
        """End the workers (and the local Ray this runner started)."""
        for worker in self.workers:
            ray.kill(worker, no_restart=True)
        if self.owns_ray:
            ray.shutdown()


def follow(worker: Any, job_id: str, answer: Any, on_progress: ProgressCallback | None, cancel: Any) -> Any:
    """Wait for a worker's `answer` to job `job_id`, passing its progress events to `on_progress` and `cancel`
    to it; returns its value, or raises the job's own exception (Cancelled, an UprezError...)."""
    poll = worker.poll.remote(job_id)
    while True:
        finished = bool(ray.wait([answer], timeout=POLL_S)[0])
        if cancel is not None and cancel.cancelled and not finished:
            worker.cancel.remote(job_id)  # again each time: a worker restarted meanwhile has not heard it
        if ray.wait([poll], timeout=0)[0]:
            _forward(poll, on_progress)
            poll = worker.poll.remote(job_id)
        if finished:
            break
    try:
        value = ray.get(answer)
    except ray.exceptions.RayTaskError as exc:  # the job's own error, not Ray's wrapper with the remote traceback
        raise (exc.cause or exc) from None
    finally:
        _forward(poll, on_progress)
        _forward(worker.poll.remote(job_id), on_progress)  # the last events, and the worker forgets the job
    return value


def _forward(poll: Any, on_progress: ProgressCallback | None) -> None:
    try:
        events = ray.get(poll)
    except ray.exceptions.RayError:  # the worker was being replaced: its progress starts over with the re-run
        return
    if on_progress is not None:
        for event in events:
            on_progress(event)
