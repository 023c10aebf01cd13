"""A local Ray with 2 CPU workers and one `uprez serve --cluster` engine on it, started once for tests/cluster.

Ray takes tens of seconds to start on 2 busy cores: every test of the module shares the one cluster and the one
engine. Module scope, not session: at session scope Ray, its two workers and their loaded models stayed up for the
rest of the suite (about 20 minutes, ~10 % of a core in Ray's own processes)."""

from __future__ import annotations

import importlib.util

import pytest
from needs import missing

from engine.server import ServerConfig, start_in_thread

HAS_RAY = importlib.util.find_spec("ray") is not None
RAY_REASON = "Ray is not installed (pip install 'uprez[cluster]', which scripts/setup.sh dev installs)"


@pytest.fixture(scope="module")
def ray_cluster(config_dir, prompt_cache_dir):
    """A local Ray with 2 CPUs: no dashboard, a small object store, workers' logs kept out of the test output.
    Its workers inherit this process's environment now: the session's config and cache folders, UPREZ_CPU_BF16."""
    if not HAS_RAY:
        missing("ray", RAY_REASON)
    import ray

    from engine.cluster.start import start_local

    start_local(num_cpus=2, object_store_memory=128 * 2**20)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def cluster_server(ray_cluster, config_dir, tiny_flux):
    """`uprez serve --cluster auto --cluster-workers 2` on 127.0.0.1; its default model, which the workers load at
    start, is the built-in one (no diffusers to import), and jobs may name the tiny FLUX model."""
    server = start_in_thread(ServerConfig(host="127.0.0.1", port=0, model="builtin", device="cpu",
                                          queue_size=8, config_dir=config_dir, model_dirs=(tiny_flux.parent,),
                                          cluster="auto", cluster_workers=2))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def single_server(start_server):
    """The same engine without the cluster: the model in the server's own process, one job at a time."""
    return start_server()


@pytest.fixture
def ray_module():
    """The `ray` module without starting it (a missing Ray: skipped here, failed under CI=true)."""
    if not HAS_RAY:
        missing("ray", RAY_REASON)
    import ray

    return ray
