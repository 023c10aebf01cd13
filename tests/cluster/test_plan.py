"""The cluster's plain parts, without starting Ray: how many workers, the tile shares, the message without Ray."""

from __future__ import annotations

import sys

import pytest

from engine.cluster.start import ClusterError, ClusterPlan, import_ray, plan
from engine.errors import InvalidInput


@pytest.mark.parametrize(("resources", "workers", "expected"), [
    ({"GPU": 4.0, "CPU": 32.0}, None, ClusterPlan(4, 1.0, 1.0)),  # one worker per GPU
    ({"GPU": 4.0, "CPU": 32.0}, 2, ClusterPlan(2, 1.0, 1.0)),  # fewer when asked
    ({"GPU": 2.0, "CPU": 32.0}, 8, ClusterPlan(2, 1.0, 1.0)),  # never more than the GPUs
    ({"CPU": 2.0}, 2, ClusterPlan(2, 0.0, 1.0)),  # CPU workers, as the tests run
])
def test_plan_gives_one_worker_per_gpu_or_the_cpu_workers_asked_for(resources, workers, expected):
    assert plan(resources, workers) == expected


def test_plan_says_what_to_do_without_gpus_or_cpus():
    with pytest.raises(ClusterError, match="--cluster-workers N"):
        plan({"CPU": 8.0}, None)
    with pytest.raises(ClusterError, match="needs 3 CPUs, the Ray cluster has 2"):
        plan({"CPU": 2.0}, 3)


def test_without_ray_the_message_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    with pytest.raises(ClusterError, match=r"pip install 'uprez\[cluster\]'"):
        import_ray()


def test_cluster_workers_must_be_positive():
    from engine.cluster.start import connect

    with pytest.raises(InvalidInput, match="--cluster-workers must be 1 or more, got 0"):
        connect("auto", 0)


def test_shares_are_contiguous_in_order_and_even(ray_module):
    from engine.cluster.spread import shares

    assert shares(9, 2) == [range(0, 5), range(5, 9)]
    assert shares(4, 3) == [range(0, 2), range(2, 3), range(3, 4)]
    assert shares(1, 4) == [range(0, 1)]  # one batch: no helper asked
    for count in range(1, 20):
        for workers in range(1, 6):
            parts = shares(count, workers)
            assert [i for part in parts for i in part] == list(range(count))
            assert max(map(len, parts)) - min(map(len, parts)) <= 1


def test_serve_and_upscale_take_the_cluster_flags():
    from engine.cli import build_parser

    serve = build_parser().parse_args(["serve", "--cluster", "auto", "--cluster-workers", "2"])
    assert (serve.cluster, serve.cluster_workers) == ("auto", 2)
    up = build_parser().parse_args(["upscale", "in", "-o", "out", "--cluster", "head:6379"])
    assert (up.cluster, up.cluster_workers) == ("head:6379", None)
    assert build_parser().parse_args(["serve"]).cluster is None  # the default engine stays as it was
