"""Out of memory: a job retries with smaller tiles, then in the next memory mode, then says what to change."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from server_helpers import FAST, raw_image

from engine.progress import ProgressEvent
from engine.server.codec import ImageFormat
from engine.server.config import ServerConfig
from engine.server.jobs import JobQueue, JobState
from engine.server.request import JobRequest
from engine.server.runner import EngineRunner
from plugin.uprez_client import JobFailed, RejectedInput


def _wait(job, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not job.terminal:
        assert time.monotonic() < deadline, f"job stuck in {job.state}"
        time.sleep(0.01)


class StandIn:
    """A runner that runs out of memory until its memory mode is lowered: no GPU here to run out of, so this
    stand-in raises what CUDA would; the queue's retry logic is the real one."""

    def __init__(self, modes: list[str]) -> None:
        self.modes = modes  # what lower_memory hands out, in order
        self.mode = "gpu"
        self.attempts: list[tuple[int, str]] = []

    def __call__(self, job, on_progress):
        self.attempts.append((job.attempt, self.mode))
        if self.mode == "gpu":
            raise torch.OutOfMemoryError("CUDA out of memory (stand-in)")
        on_progress(ProgressEvent(1, 1, 1, 1, 1.0, 0.0))
        return b"ok", {"format": "raw"}

    def lower_memory(self, job):
        self.mode = self.modes.pop(0) if self.modes else self.mode
        return None if self.mode == "gpu" else self.mode


def _submit(runner) -> object:
    queue = JobQueue(runner)
    queue.start()
    job = queue.submit(JobRequest(image=ImageFormat("raw", 2, 2, "RGBA", 8), model="m"), np.zeros((2, 2, 4), np.uint8))
    _wait(job)
    queue.stop()
    return job


def test_after_smaller_tiles_the_job_runs_in_the_next_memory_mode():
    runner = StandIn(["model-offload"])
    job = _submit(runner)
    assert job.state is JobState.DONE, job.message
    assert runner.attempts == [(1, "gpu"), (2, "gpu"), (3, "model-offload")]
    retries = [e["message"] for e in job.events if e["event"] == "retrying"]
    assert len(retries) == 2 and "half the side" in retries[0] and "memory mode model-offload" in retries[1]


def test_with_no_mode_left_the_job_fails_saying_what_to_change():
    runner = StandIn([])
    job = _submit(runner)
    assert job.state is JobState.FAILED and len(runner.attempts) == 2
    assert "--memory sequential" in job.message and "quantized" in job.message


def test_the_cpu_engine_has_no_lower_mode(sample_image):
    runner = EngineRunner(ServerConfig(model="builtin", device="cpu"))
    job = type("Job", (), {"request": JobRequest(image=ImageFormat("raw", 2, 2, "RGBA", 8), model="builtin")})()
    assert runner.lower_memory(job) is None


def test_a_job_asking_for_a_mode_the_device_lacks_fails_in_one_line_and_another_mode_runs(client):
    """Through a real server on the CPU with the tiny FLUX model: `memory` is a job param like any other."""
    with pytest.raises(JobFailed) as failed:
        client.wait(client.submit_raw(raw_image(8, 8), 8, 8, scale=2, memory="group-offload", **FAST))
    message = str(failed.value)
    assert "--memory group-offload" in message and "CPU" in message and "\n" not in message
    with pytest.raises(RejectedInput, match="memory must be one of"):
        client.submit_raw(raw_image(8, 8), 8, 8, scale=2, memory="turbo", **FAST)
    done = client.wait(client.submit_raw(raw_image(8, 8), 8, 8, scale=2, memory="gpu", **FAST))
    assert done["state"] == "done"
