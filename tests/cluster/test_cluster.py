"""`uprez serve --cluster` on a local Ray with 2 CPU workers (issue 19): jobs from several clients spread over the
workers, one tiled job's tiles split over both with the single-worker bytes, and a worker killed mid-job replaced
with the job still finishing with the right bytes. Also `uprez upscale DIR --cluster`.

Every result is compared with the same job on the engine without a cluster (the model in the server's own
process): the bytes must be equal, so a worker that ran another model, the wrong tiles or a stale state fails."""

from __future__ import annotations

import os
import signal
import threading
import time

import numpy as np
import pytest
from PIL import Image

from plugin.uprez_client import Client

SMALL = {"steps": 8, "strength": 0.3}  # whole (one tile), two model calls a stage
# 64 px tiles with 16 px overlap: a 48x48 image's x2 output (96 px) is 2x2 tiles on the built-in model, and 3x3
# on tiny FLUX (its latent is 8 px a position): each step has several tile batches to share out.
TILED = {"steps": 8, "strength": 0.5, "tile_size": 64, "tile_overlap": 16, "scale": 2}


def raw_image(width: int, height: int, seed: int) -> bytes:
    """Smooth gradients plus noise, RGBA 8-bit: something image-like for the VAE and the built-in network."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x / (width - 1), y / (height - 1), np.full(x.shape, 0.5), np.ones(x.shape)], axis=2)
    return np.round((base + rng.normal(0, 0.05, base.shape)).clip(0, 1) * 255).astype(np.uint8).tobytes()


def run(client: Client, width: int, height: int, seed: int, **params) -> bytes:
    job = client.submit_raw(raw_image(width, height, seed), width, height, "RGBA", seed=seed, **params)
    client.wait(job)
    return client.result(job)[0]


def worker_stats(server) -> list[dict]:
    import ray

    return ray.get([worker.stats.remote() for worker in server.app.state.runner.workers])


def test_six_jobs_from_two_clients_all_finish_on_both_workers(cluster_server, single_server):
    results: dict[tuple[int, int], bytes] = {}
    errors: list[BaseException] = []

    def client_jobs(name: int) -> None:
        client = Client(cluster_server.url)
        try:
            ids = {(name, seed): client.submit_raw(raw_image(40, 48, seed), 40, 48, "RGBA", seed=seed,
                                                   model="builtin", client=f"client {name}", **SMALL)
                   for seed in (name * 10, name * 10 + 1, name * 10 + 2)}
            for key, job in ids.items():
                client.wait(job)
                results[key] = client.result(job)[0]
        except BaseException as exc:  # noqa: BLE001 - reported by the test thread
            errors.append(exc)

    busy = [0, 0]
    stop = threading.Event()

    def watch() -> None:  # how many jobs run at once, seen from the queue
        while not stop.is_set():
            running = len(cluster_server.app.state.queue._active)
            busy[running >= 2] += 1
            time.sleep(0.02)

    watcher = threading.Thread(target=watch)
    watcher.start()
    threads = [threading.Thread(target=client_jobs, args=(name,)) for name in (1, 2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    stop.set()
    watcher.join()
    assert not errors, errors
    assert len(results) == 6
    single = Client(single_server.url)
    for (_name, seed), data in results.items():
        assert data == run(single, 40, 48, seed, model="builtin", **SMALL), f"job with seed {seed} differs"
    assert busy[1] > 0, "the two workers never ran jobs at the same time"


@pytest.mark.parametrize("model", ["builtin", "tiny-flux"])
def test_tiled_job_split_over_two_workers_equals_single_worker_bytes(cluster_server, single_server, tiny_flux, model):
    model = str(tiny_flux) if model == "tiny-flux" else model
    helped = sum(stats["helped"] for stats in worker_stats(cluster_server))
    split = run(Client(cluster_server.url), 48, 48, 3, model=model, **TILED)
    assert sum(stats["helped"] for stats in worker_stats(cluster_server)) > helped, "no tile went to the other worker"
    assert split == run(Client(single_server.url), 48, 48, 3, model=model, **TILED)


def test_killed_worker_is_replaced_and_the_job_finishes_with_the_same_bytes(cluster_server, single_server):
    params = {**TILED, "steps": 40, "strength": 1.0, "model": "builtin"}  # long enough to be killed in the middle
    client = Client(cluster_server.url)
    job = client.submit_raw(raw_image(48, 48, 5), 48, 48, "RGBA", seed=5, **params)
    runner = cluster_server.app.state.runner
    deadline = time.monotonic() + 120
    while (client.job(job)["progress"] or {}).get("fraction", 0.0) < 0.2:
        assert time.monotonic() < deadline, "the job made no progress"
        time.sleep(0.05)
    import ray

    worker = runner.running[job]
    pid = ray.get(worker.stats.remote())["pid"]
    os.kill(pid, signal.SIGKILL)
    client.wait(job)
    assert client.job(job)["state"] == "done"
    assert ray.get(worker.stats.remote())["pid"] != pid, "the worker was not replaced"
    assert client.result(job)[0] == run(Client(single_server.url), 48, 48, 5, **params)


def test_cancel_reaches_the_worker_and_progress_comes_back(cluster_server):
    params = {**TILED, "steps": 200, "strength": 1.0, "model": "builtin"}  # far longer than the test waits
    client = Client(cluster_server.url)
    job = client.submit_raw(raw_image(48, 48, 6), 48, 48, "RGBA", seed=6, **params)
    deadline = time.monotonic() + 120
    while (client.job(job)["progress"] or {}).get("fraction", 0.0) <= 0.0:
        assert time.monotonic() < deadline, "no progress came back from the worker"
        time.sleep(0.05)
    progress = client.job(job)["progress"]
    assert progress["phase"] and progress["stage"] == 1
    cancelled = time.monotonic()
    client.cancel(job)
    final = client.events(job)
    assert final["event"] == "cancelled"
    assert time.monotonic() - cancelled < 20


def test_folder_batch_over_the_cluster_writes_every_image(tmp_path, ray_cluster, cluster_server):
    from engine.api import upscale
    from engine.cli import main

    folder, out = tmp_path / "in", tmp_path / "out"
    folder.mkdir()
    for seed in range(3):
        pixels = np.frombuffer(raw_image(32, 24, seed), np.uint8).reshape(24, 32, 4)[:, :, :3]
        Image.fromarray(pixels).save(folder / f"{seed}.png")
    # The server's two workers hold the Ray's two CPUs: the batch's own two workers wait for them, so stop them.
    cluster_server.stop()
    assert main(["upscale", str(folder), "-o", str(out), "-m", "builtin", "--cluster", "auto",
                 "--cluster-workers", "2", "--steps", "8", "--strength", "0.3", "-q"]) == 0
    for seed in range(3):
        with Image.open(folder / f"{seed}.png") as image:
            expected = np.asarray(upscale(np.asarray(image), steps=8, strength=0.3, model="builtin"))
        with Image.open(out / f"{seed}.png") as written:
            assert np.array_equal(np.asarray(written), expected)
