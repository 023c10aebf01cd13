"""The Krita job's worker says "engine idle, model unloaded" (an event the dialog shows) instead of failing, and
the job then runs: the job's network part against a real engine, outside Krita (no document is touched)."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from types import SimpleNamespace

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "plugin" / "krita"), str(ROOT / "plugin")]

import uprez_client  # noqa: E402
from uprez_client.idle import IDLE_UNLOADED  # noqa: E402
from uprez_krita.job import UpscaleJob  # noqa: E402

from engine.server import ServerConfig, start_in_thread  # noqa: E402
from engine.server.idle import IdlePolicy  # noqa: E402


def test_a_job_on_an_engine_that_unloaded_its_model_says_so_and_runs(config_dir):
    server = start_in_thread(ServerConfig(host="127.0.0.1", port=0, model="builtin", device="cpu",
                                          config_dir=config_dir, idle=IdlePolicy(unload_after=0.5)))
    try:
        client = uprez_client.Client(server.url)
        deadline = time.monotonic() + 30
        while not client.health()["idle_unloaded"]:
            assert time.monotonic() < deadline, "the engine did not unload its model"
            time.sleep(0.1)
        width, height = 24, 16
        source = SimpleNamespace(pixels=bytes(range(256)) * (width * height * 4 // 256), mask=None, profile=None,
                                 fmt=SimpleNamespace(channels="BGRA", depth=8),
                                 plan=SimpleNamespace(placement=SimpleNamespace(
                                     crop=SimpleNamespace(width=width, height=height)), params={"scale": 2.0}))
        job = UpscaleJob(source, client=client)
        events: list[uprez_client.JobEvent] = []
        job.event.connect(events.append)  # same thread: delivered at once
        data, meta = job._run()  # the worker thread's part, run here
        assert events[0] == uprez_client.JobEvent("engine_idle", message=IDLE_UNLOADED)
        assert [e.kind for e in events][1] == "submitted" and events[-1].kind == "done"
        assert (meta["width"], meta["height"]) == (2 * width, 2 * height) and len(data) == 4 * width * height * 4
    finally:
        server.stop()
