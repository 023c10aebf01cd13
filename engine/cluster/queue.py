"""The server's job queue on a cluster: the same queue (engine.server.jobs.JobQueue: bounded, events, cancel,
out-of-memory retry), worked by one thread per Ray worker, so as many jobs run at once as there are workers."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from engine.server.jobs import Job, JobQueue


class ClusterQueue(JobQueue):
    """`JobQueue` with `runner.workers` worker threads. Each thread's running job is its own: `_running` (the one
    job the single-threaded queue knows) reads as any running job, which is what its callers ask (is a job running,
    which one to show, how long until a slot frees)."""

    def __init__(self, runner: Any, **options: Any) -> None:
        self._active: dict[int, Job] = {}  # worker thread -> its running job
        self._threads: list[threading.Thread] = []
        super().__init__(runner, **options)

    @property
    def _running(self) -> Job | None:  # type: ignore[override]
        return next(iter(self._active.values()), None)

    @_running.setter
    def _running(self, job: Job | None) -> None:
        if job is None:
            self._active.pop(threading.get_ident(), None)
        else:
            self._active[threading.get_ident()] = job

    def start(self, warmup: Callable[[], None] | None = None) -> None:
        """The first thread warms the workers up (all at once); the others start taking jobs after it."""
        super().start(warmup)
        for index in range(1, len(getattr(self.runner, "workers", ())) or 1):
            thread = threading.Thread(target=self._after_warmup, name=f"uprez-worker-{index + 1}", daemon=True)
            self._threads.append(thread)
            thread.start()

    def _after_warmup(self) -> None:
        with self._lock:
            while self._warming and not self._stopping:
                self._lock.wait(timeout=0.1)
        self._work(None)

    def stop(self, timeout: float = 10.0) -> None:
        with self._lock:
            for job in self._active.values():
                job.cancel.cancel()
        super().stop(timeout)
        for thread in self._threads:
            thread.join(timeout)
        close = getattr(self.runner, "close", None)
        if close is not None:
            close()
