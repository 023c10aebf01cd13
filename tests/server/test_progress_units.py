"""Progress in work units through a real server: events that move on a tiled job, an honest ETA, and a cancel
honoured between VAE tiles (issue 24)."""

from __future__ import annotations

import re
import threading
import time
from itertools import pairwise

import pytest
from server_helpers import FAST, raw_image

from engine.backends.cache import ModelCache, load_spec
from engine.server import Limits
from engine.settings import ModelSpec
from engine.testing.paced import PacedBackend
from engine.work import WorkCosts
from plugin.uprez_client import Client, JobCancelled

BIG = Limits(max_upload_bytes=8 * 2**20, max_pixels=512 * 512, max_output_pixels=1024 * 1024)


def _follow(client: Client, job: str, on_progress=None) -> tuple[list[tuple[float, dict]], dict, float]:
    """Every event of `job` with the time it arrived; the final event and its time."""
    events: list[tuple[float, dict]] = []

    def on_event(event: dict) -> None:
        events.append((time.monotonic(), event))
        if on_progress is not None and event["event"] == "progress":
            on_progress(event)

    final = client.events(job, on_event)
    return events, final, time.monotonic()


def _progress(events: list[tuple[float, dict]]) -> list[tuple[float, dict]]:
    return [(t, e) for t, e in events if e["event"] == "progress"]


def test_builtin_tiled_job_reports_many_small_increasing_steps_with_phase_text(start_server):
    # 384x288 -> 768x576 in 128 px tiles (32 px overlap): 35 tiles a model call, 4 steps; long enough that the
    # rate limit (about ten events a second) still lets 20 through.
    server = start_server(model="builtin", limits=BIG)
    client = Client(server.url)
    job = client.submit_raw(raw_image(384, 288, 3), 384, 288, "RGB", 8, scale=2, steps=4, strength=1.0,
                            tile_size=128, tile_overlap=32)
    events, final, _ = _follow(client, job)
    assert final["event"] == "done"
    progress = [e for _, e in _progress(events)]
    fractions = [e["fraction"] for e in progress]
    assert len(progress) >= 20, fractions
    assert all(a < b for a, b in pairwise(fractions)), fractions
    assert fractions[-1] == 1.0
    assert max(b - a for a, b in pairwise([0.0, *fractions])) <= 0.15, fractions
    phases = [e["phase"] for e in progress]
    assert any(re.fullmatch(r"denoising tile \d+/(2\d|3\d|4\d) \(step 2/4\)", p) for p in phases), phases
    assert all({"stage", "stages", "step", "steps", "sigma", "elapsed_s", "eta_s"} <= e.keys() for e in progress)
    # at most about ten a second (the worker's clock, not the reader's)
    elapsed = [e["elapsed_s"] for e in progress]
    assert len(progress) <= 10 * (elapsed[-1] - elapsed[0]) + 2


@pytest.fixture
def paced_flux(monkeypatch, tiny_flux):
    """The server's runner gets the tiny FLUX model made to cost a fixed time per latent position and call
    (a stand-in for a big model's GPU calls, which cannot run here); the fixture sets the pace per test."""
    inner = load_spec(ModelSpec(str(tiny_flux), device="cpu"))

    def make(seconds: float, costs: WorkCosts | None = None) -> PacedBackend:
        paced = PacedBackend(inner, seconds, costs)
        monkeypatch.setattr(ModelCache, "get", lambda self, spec: paced)  # what the runner's cache hands it
        return paced

    return make


def test_eta_at_a_quarter_is_within_a_factor_two_of_the_real_remaining_time(start_server, paced_flux):
    # 128x128 -> 256x256, 64 px tiles: a reference pass over 3 x 3 tiles, then 5 x 5 tiles for the VAE's
    # statistics pass and encode, each model step and the decode's two passes; 8 ms per tile-sized call.
    paced = paced_flux(0.008 / 64)
    server = start_server(limits=BIG)
    client = Client(server.url)
    job = client.submit_raw(raw_image(128, 128, 3), 128, 128, "RGB", 8, scale=2, tile_size=64, **FAST)
    events, final, end = _follow(client, job)
    assert final["event"] == "done"
    assert paced.calls["encode"] >= 2 * 25 and paced.calls["decode"] >= 2 * 25
    progress = _progress(events)
    assert len(progress) >= 20
    arrived, quarter = next((t, e) for t, e in progress if e["fraction"] >= 0.25)
    assert quarter["fraction"] < 0.4  # the fraction moved in small steps past a quarter
    real = end - arrived
    assert real / 2 <= quarter["eta_s"] <= real * 2, (quarter, real)


def test_cancel_during_a_tiled_decode_stops_within_two_seconds(start_server, paced_flux):
    # Decoding tiles cost 0.2 s each here (25 of them, twice): without a cancel point between tiles the
    # job would run on for seconds after the cancel.
    paced_flux(0.01 / 64, WorkCosts(model=1.0, encode=1.0, decode=20.0, resize=0.0, finish=0.0))
    server = start_server(limits=BIG)
    client = Client(server.url)
    job = client.submit_raw(raw_image(128, 128, 3), 128, 128, "RGB", 8, scale=2, tile_size=64, **FAST)
    pressed: list[float] = []

    def on_progress(event: dict) -> None:
        if not pressed and event["phase"].startswith("decoding tile "):
            pressed.append(time.monotonic())
            threading.Thread(target=client.cancel, args=(job,)).start()

    events, final, end = _follow(client, job, on_progress)
    assert pressed, [e.get("phase") for _, e in events]
    assert final["event"] == "cancelled"
    assert end - pressed[0] < 2.0, end - pressed[0]
    with pytest.raises(JobCancelled):
        client.wait(job)
