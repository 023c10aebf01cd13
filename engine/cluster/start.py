"""Ray started on this machine (`--cluster auto`) or joined at an address, and the workers it gets."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from engine.errors import InvalidInput, UprezError

# The local Ray's shared-memory object store: images and tile batches pass through it, a few MB at a time.
LOCAL_OBJECT_STORE_BYTES = 256 * 2**20


class ClusterError(UprezError):
    """Ray is missing, or the cluster cannot give the workers asked for."""


@dataclass(frozen=True)
class ClusterPlan:
    """How many model workers to start and what each reserves: one GPU each, or one CPU each without GPUs."""

    workers: int
    gpus_each: float
    cpus_each: float


def import_ray() -> Any:
    """The `ray` module, or a one-line error saying how to install it."""
    try:
        import ray
    except ImportError:
        raise ClusterError("--cluster needs Ray, which is not installed; install it with: "
                           "pip install 'uprez[cluster]'") from None
    return ray


def connect(address: str, workers: int | None = None) -> ClusterPlan:
    """Start Ray here (`address` "auto") or join the cluster at `address`; the plan for the model workers.

    Locally, one worker per GPU the machine has, or `workers` CPU workers (tests, a GPU-less machine). On a
    cluster, one worker per GPU it reports unless `workers` says fewer."""
    if workers is not None and workers < 1:
        raise InvalidInput(f"--cluster-workers must be 1 or more, got {workers}")
    ray = import_ray()
    if not ray.is_initialized():
        if address == "auto":
            gpus = _local_gpus()
            cpus = max(workers or 0, os.cpu_count() or 1) if not gpus else None
            start_local(num_cpus=cpus, num_gpus=gpus)
        else:
            try:
                ray.init(address=address, log_to_driver=False, configure_logging=False)
            except (ConnectionError, ValueError, RuntimeError) as exc:
                raise ClusterError(f"cannot join the Ray cluster at {address} ({exc}); is `ray start --head` "
                                   "running there, and is this machine's Ray the same version?") from None
    return plan(ray.cluster_resources(), workers)


def start_local(num_cpus: int | None = None, num_gpus: int | None = None,
                object_store_memory: int = LOCAL_OBJECT_STORE_BYTES) -> None:
    """A Ray on this machine: loopback only (a local cluster has no business on the network), no dashboard, its
    workers' logs kept out of ours. Started once more if it does not come up: Ray gives its raylet a fixed 30 s
    to register, which a busy machine can miss."""
    ray = import_ray()
    options = {"num_cpus": num_cpus, "num_gpus": num_gpus, "object_store_memory": object_store_memory,
               "include_dashboard": False, "log_to_driver": False, "configure_logging": False,
               "_node_ip_address": "127.0.0.1"}
    try:
        ray.init(**options)
    except Exception as exc:  # Ray raises a bare Exception for this timeout
        if "timed out during startup" not in str(exc):
            raise
        ray.shutdown()
        ray.init(**options)


def plan(resources: dict[str, float], workers: int | None) -> ClusterPlan:
    """One worker per GPU (at most `workers`), else `workers` CPU workers; a clear error when neither fits."""
    gpus, cpus = int(resources.get("GPU", 0)), int(resources.get("CPU", 0))
    if gpus:
        return ClusterPlan(min(gpus, workers or gpus), 1.0, 1.0)
    if workers is None:
        raise ClusterError("the Ray cluster has no GPU; give --cluster-workers N to run N workers on CPUs")
    if workers > cpus:
        raise ClusterError(f"--cluster-workers {workers} needs {workers} CPUs, the Ray cluster has {cpus}")
    return ClusterPlan(workers, 0.0, 1.0)


def _local_gpus() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def shutdown() -> None:
    """Leave the cluster (a local Ray stops with it)."""
    ray = import_ray()
    if ray.is_initialized():
        ray.shutdown()
