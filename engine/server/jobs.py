"""The job queue: one worker thread owns the model; jobs wait in a bounded queue and record their events."""

from __future__ import annotations

import gc
import hashlib
import logging
import math
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from functools import partial
from typing import Any

import numpy as np
import torch

from engine.allocator import release_free_memory
from engine.errors import DeviceError, UprezError
from engine.progress import Cancelled, CancelToken, ProgressCallback, ProgressEvent
from engine.server.codec import preview_jpeg
from engine.server.fair import FairQueue
from engine.server.request import JobRequest

log = logging.getLogger("uprez.server")


class JobState(str, Enum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


TERMINAL = frozenset({JobState.DONE, JobState.FAILED, JobState.CANCELLED})
COALESCED = frozenset({"progress", "preview"})  # only the latest matters: a slow reader gets no backlog


class QueueFull(Exception):
    """The queue holds as many waiting jobs as it may; try again after `retry_after` seconds."""

    def __init__(self, waiting: int, retry_after: int) -> None:
        super().__init__(f"the engine's queue is full ({waiting} jobs waiting); try again in about "
                         f"{retry_after} s, or cancel a queued job")
        self.retry_after = retry_after


class JobNotFound(LookupError):
    """No job with this id: never submitted, or finished and expired."""


@dataclass(eq=False)
class Job:
    """One upscale: its request and buffers, its state, and the events a client can replay."""

    id: str
    request: JobRequest
    image: np.ndarray | None  # freed as soon as the job ends, whatever the outcome
    mask: np.ndarray | None = None
    state: JobState = JobState.QUEUED
    created: float = 0.0
    started: float | None = None
    finished: float | None = None
    message: str = ""
    progress: dict[str, Any] | None = None
    result: bytes | None = None
    result_meta: dict[str, Any] | None = None
    cancel: CancelToken = field(default_factory=CancelToken)
    events: list[dict[str, Any]] = field(default_factory=list)
    seq: int = 0
    attempt: int = 0  # 1 on the first run, 2 on the retry after running out of memory
    owner: str = "local"  # the token that submitted it (engine.server.tokens): only it may see or cancel the job
    result_sha256: str | None = None  # of the whole result: the ETag of ranged downloads, and their check

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL


# The runner turns a job into (result bytes, result metadata); the queue adds retries, events and state.
Runner = Callable[[Job, ProgressCallback], tuple[bytes, dict[str, Any]]]


def is_out_of_memory(exc: BaseException) -> bool:
    """Out of device or host memory, as torch raises it or as the engine's pre-flight check words it."""
    return isinstance(exc, (torch.OutOfMemoryError, MemoryError)) or (
        isinstance(exc, DeviceError) and "memory" in str(exc).lower()
    )


def free_memory() -> None:
    """Give cached allocator blocks back, so a retry starts from the emptiest device we can make."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    if torch.backends.mps.is_available():
        torch.mps.empty_cache()


def out_of_memory_message(exc: BaseException) -> str:
    return (f"out of memory, also after retrying with smaller tiles and less memory ({exc or type(exc).__name__}); "
            "use a smaller scale or tile_size, upscale a selected region instead of the whole image, a quantized "
            "model file (GGUF Q4_K, fp8; `uprez models plan MODEL` shows what fits), or restart the engine with "
            "`uprez serve --memory sequential`")


class JobQueue:
    """A bounded FIFO of jobs run one at a time by a single worker thread, which owns the model and device."""

    def __init__(self, runner: Runner, *, queue_size: int = 8, result_ttl: float = 600.0, keep_finished: int = 256,
                 keep_result_bytes: int = 2 * 2**30, clock: Callable[[], float] = time.time) -> None:
        self.runner = runner
        self.queue_size = queue_size
        self.result_ttl = result_ttl
        self.keep_finished = keep_finished
        self.keep_result_bytes = keep_result_bytes  # results held for fetching, all together; the newest always
        self.clock = clock
        self._lock = threading.Condition()
        self._jobs: dict[str, Job] = {}
        self._waiting: FairQueue[Job] = FairQueue()  # round robin among owners; one owner = plain FIFO
        self._running: Job | None = None
        self._durations: deque[float] = deque(maxlen=10)
        self._stopping = False
        self._warming = False  # the worker is loading the default model: not idle, though no job runs
        self._thread: threading.Thread | None = None

    # -- lifecycle ----------------------------------------------------------------------------------
    def start(self, warmup: Callable[[], None] | None = None) -> None:
        """Start the worker; `warmup` (e.g. loading the default model) runs on it before the first job."""
        self._warming = warmup is not None
        self._thread = threading.Thread(target=self._work, args=(warmup,), name="uprez-worker", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Cancel everything and end the worker; the running job stops at its next step."""
        with self._lock:
            self._stopping = True
            while self._waiting:
                self._finish(self._waiting.popleft(), JobState.CANCELLED, "the engine is shutting down")
            if self._running is not None:
                self._running.cancel.cancel()
            self._lock.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)

    # -- what the HTTP layer calls ------------------------------------------------------------------
    def submit(self, request: JobRequest, image: np.ndarray, mask: np.ndarray | None = None,
               owner: str = "local") -> Job:
        """Queue a job for `owner`; raises QueueFull when `queue_size` jobs are already waiting."""
        with self._lock:
            if self._stopping:
                raise QueueFull(len(self._waiting), 5)
            if len(self._waiting) >= self.queue_size:
                raise QueueFull(len(self._waiting), self._retry_after())
            job = Job(uuid.uuid4().hex, request, image, mask, created=self.clock(), owner=owner)
            self._jobs[job.id] = job
            self._waiting.append(job)
            self._emit(job, "queued", position=len(self._waiting))
            self._lock.notify_all()
            return job

    def get(self, job_id: str, owner: str | None = None) -> Job:
        """The job `job_id`; with `owner`, only if that owner submitted it (another's job is as absent)."""
        with self._lock:
            self._sweep()
            job = self._jobs.get(job_id)
        if job is None or (owner is not None and job.owner != owner):
            raise JobNotFound(f"no job {job_id!r}: it was never submitted, or it finished and was forgotten (results "
                              f"are kept {self.result_ttl:g} s, and only the newest when they pass "
                              f"{self.keep_result_bytes // 2**20} MiB together)")
        return job

    def cancel(self, job_id: str, owner: str | None = None) -> Job:
        """Cancel a queued or running job; a finished one is forgotten and its result freed."""
        job = self.get(job_id, owner)
        with self._lock:
            if job.state is JobState.QUEUED:
                self._waiting.remove(job)
                self._finish(job, JobState.CANCELLED, "cancelled before it started")
            elif job.state is JobState.RUNNING:
                job.cancel.cancel()  # the worker sees it within one tile and finishes the job
            else:
                self._jobs.pop(job.id, None)
                job.result = job.result_meta = None
            return job

    def summary(self, job: Job) -> dict[str, Any]:
        """The JSON a client sees for one job."""
        with self._lock:
            position = self._waiting.index(job) + 1 if job.state is JobState.QUEUED else None
            return {
                "id": job.id, "state": job.state.value, "message": job.message, "position": position,
                "created": job.created, "started": job.started, "finished": job.finished,
                "progress": job.progress, "cancelling": job.cancel.cancelled and not job.terminal,
                "result": dict(job.result_meta or {}, bytes=len(job.result)) if job.result is not None else None,
                "params": job.request.to_params(),
            }

    def summaries(self, owner: str | None = None) -> list[dict[str, Any]]:
        """Every job remembered, or only `owner`'s."""
        with self._lock:
            self._sweep()
            jobs = [job for job in self._jobs.values() if owner is None or job.owner == owner]
        return [self.summary(job) for job in jobs]

    def events_after(self, job: Job, seq: int) -> list[dict[str, Any]]:
        """Events of `job` newer than `seq` (progress is coalesced: a slow reader gets the latest)."""
        with self._lock:
            return [event for event in job.events if event["seq"] > seq]

    def when_idle(self, action: Callable[[], None]) -> bool:
        """Run `action` (the idle unload) with the queue locked if no job waits or runs and the warm-up is over,
        so no job can start meanwhile; False when it was not idle."""
        with self._lock:
            if self._waiting or self._running is not None or self._warming:
                return False
            action()
            return True

    @property
    def warming(self) -> bool:
        """The worker is still loading the default model (the idle clock starts after it)."""
        with self._lock:
            return self._warming

    @property
    def waiting(self) -> int:
        with self._lock:
            return len(self._waiting)

    def check_room(self) -> None:
        """Raise QueueFull now if a submission would be refused, so the HTTP layer need not read its upload."""
        with self._lock:
            if self._stopping:
                raise QueueFull(len(self._waiting), 5)
            if len(self._waiting) >= self.queue_size:
                raise QueueFull(len(self._waiting), self._retry_after())

    @property
    def running(self) -> Job | None:
        with self._lock:
            return self._running

    # -- the worker ---------------------------------------------------------------------------------
    def _work(self, warmup: Callable[[], None] | None) -> None:
        if warmup is not None:
            try:
                warmup()
            except Exception as exc:  # a bad default model must not kill the worker; its jobs will say why
                log.warning("could not load the default model: %s", exc)
        with self._lock:
            self._warming = False
        while True:
            with self._lock:
                while not self._waiting and not self._stopping:
                    self._sweep()
                    self._lock.wait(timeout=1.0)
                if self._stopping:
                    return
                job = self._waiting.popleft()
                job.state, job.started, self._running = JobState.RUNNING, self.clock(), job
                self._emit(job, "started", model=job.request.model)
            self._run(job)
            with self._lock:
                self._running = None
                self._sweep()
                idle = not self._waiting
            if idle:  # the job's buffers were kept for reuse (engine/allocator.py): back to the kernel until the next
                release_free_memory()

    def _run(self, job: Job) -> None:
        for attempt in (1, 2, 3):
            job.attempt = attempt
            began = time.monotonic()
            try:
                data, meta = self.runner(job, partial(self._on_progress, job, began=began))
            except Cancelled:
                outcome = (JobState.CANCELLED, "cancelled", None, None)
            except Exception as exc:
                if is_out_of_memory(exc) and attempt == 1:
                    free_memory()
                    with self._lock:
                        self._emit(job, "retrying", message=f"out of memory ({exc}); freed caches, retrying once "
                                   "with tiles of half the side")
                    continue
                lower = getattr(self.runner, "lower_memory", None)  # smaller tiles were not enough: less resident
                mode = lower(job) if is_out_of_memory(exc) and attempt == 2 and lower is not None else None
                if mode is not None:
                    free_memory()
                    with self._lock:
                        self._emit(job, "retrying", message=f"out of memory with smaller tiles too; retrying with "
                                   f"memory mode {mode}")
                    continue
                outcome = (JobState.FAILED, self._failure_message(exc), None, None)
            else:
                self._durations.append(time.monotonic() - began)
                job.result_sha256 = hashlib.sha256(data).hexdigest()  # here, not under the lock: ~30 ms for 20 MB
                outcome = (JobState.DONE, "", data, meta)
            with self._lock:
                self._finish(job, *outcome)
            return

    @staticmethod
    def _failure_message(exc: Exception) -> str:
        if is_out_of_memory(exc):
            return out_of_memory_message(exc)
        if isinstance(exc, UprezError):
            return str(exc)
        log.exception("job failed unexpectedly")
        return f"internal error ({type(exc).__name__}: {exc}); the engine's log has the details"

    def _on_progress(self, job: Job, event: ProgressEvent, began: float) -> None:
        elapsed = time.monotonic() - began
        eta = elapsed * (1.0 - event.fraction) / event.fraction if event.fraction > 0 else None
        progress = {"stage": event.stage, "stages": event.stages, "step": event.step, "steps": event.steps,
                    "fraction": event.fraction, "sigma": event.sigma, "elapsed_s": round(elapsed, 3),
                    "eta_s": None if eta is None else round(eta, 3), "phase": event.phase}
        preview = None
        if event.preview is not None:  # encoded here, on the worker, outside the lock
            preview = {"stage": event.stage, "step": event.step, "width": event.preview.shape[1],
                       "height": event.preview.shape[0], "format": "jpeg", "image": preview_jpeg(event.preview)}
        with self._lock:
            job.progress = progress
            self._emit(job, "progress", **progress)
            if preview is not None:
                self._emit(job, "preview", **preview)

    # -- helpers (lock held) ------------------------------------------------------------------------
    def _emit(self, job: Job, name: str, **data: Any) -> None:
        job.seq += 1
        if name in COALESCED:  # keeps a 200-step job's history a handful of events long
            job.events = [event for event in job.events if event["event"] != name]
        job.events.append({"event": name, "job": job.id, "seq": job.seq, **data})

    def _finish(self, job: Job, state: JobState, message: str = "", result: bytes | None = None,
                meta: dict[str, Any] | None = None) -> None:
        job.state, job.message, job.finished = state, message, self.clock()
        job.image = job.mask = None  # the input buffers are not needed any more, whatever happened
        job.result, job.result_meta = result, meta
        extra = dict(meta or {}, bytes=len(result)) if result is not None else {}
        self._emit(job, state.value, message=message, **extra)
        self._lock.notify_all()

    def _sweep(self) -> None:
        """Forget finished jobs older than the TTL, and the oldest beyond `keep_finished` or `keep_result_bytes`."""
        now = self.clock()
        finished = [job for job in self._jobs.values() if job.terminal]
        excess = len(finished) - self.keep_finished
        held = 0  # result bytes of the newer jobs: a few 16K results must not add up past the memory we have
        for index, job in reversed(list(enumerate(finished))):
            size = len(job.result) if job.result is not None else 0
            over = held > 0 and held + size > self.keep_result_bytes
            if over or index < excess or (job.finished is not None and now - job.finished > self.result_ttl):
                del self._jobs[job.id]
                job.result = job.result_meta = None
            else:
                held += size

    def _retry_after(self) -> int:
        """Seconds until a queue slot is likely free: when the running job ends, by its own ETA if it has one."""
        typical = sum(self._durations) / len(self._durations) if self._durations else 5.0
        job = self._running
        if job is None:
            return int(min(3600, max(1, round(typical))))
        # The jobs ahead may be much slower than the recent average (a 4x job after a row of 2x ones): the
        # running job's own progress ETA is the better guess, then what is left of a typical job.
        eta = (job.progress or {}).get("eta_s")
        if eta is None:
            eta = typical - (self.clock() - (job.started or self.clock()))
        return int(min(3600, max(1, math.ceil(eta))))
