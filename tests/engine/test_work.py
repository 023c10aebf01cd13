"""engine.work: the fraction from planned phases and their units, rate-limited events, cancel between units."""

from __future__ import annotations

from itertools import pairwise

import numpy as np
import pytest

import engine.pipeline as pipeline
from engine import upscale
from engine.api import get_backend
from engine.progress import Cancelled, CancelToken
from engine.settings import ModelSpec
from engine.work import Phase, Work, counted


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


PLAN = [Phase("a", "upsampling", 1.0), Phase("b", "decoding", 2.0), Phase("c", "finishing", 1.0)]


def test_fraction_is_cost_done_over_total_and_the_label_names_the_tile_in_progress():
    events, clock = [], Clock()
    work = Work(PLAN, 1, events.append, clock=clock)
    work.begin("a")
    clock.now += 1
    work.unit()
    work.begin("b", 4)
    for _ in range(2):
        clock.now += 1
        work.unit()
    assert [e.fraction for e in events] == [0.25, 0.375, 0.5]
    assert events[-1].phase == "decoding tile 3/4"
    work.finish()
    assert events[-1].fraction == 1.0 and events[-1].phase == "done"


def test_events_are_rate_limited_and_only_sent_when_the_fraction_grows():
    events, clock = [], Clock()
    work = Work([Phase("a", "denoising", 1.0)], 1, events.append, min_interval=0.1, clock=clock)
    work.begin("a", 1000)
    for _ in range(1000):
        clock.now += 0.001  # a thousand units in one second
        work.unit()
    work.finish()
    assert 10 <= len(events) <= 12
    assert all(a.fraction < b.fraction for a, b in pairwise(events))


def test_phases_never_begun_count_as_done_and_unplanned_ones_cost_nothing():
    events, clock = [], Clock()
    work = Work(PLAN, 1, events.append, min_interval=0.0, clock=clock)
    work.begin("b")  # "a" was not needed after all
    work.unit()
    assert events[-1].fraction == 0.75
    work.begin("preview decode", 3)  # not in the plan: the fraction stays, the text says what runs
    work.unit()
    work.begin("c")
    work.unit()
    assert [e.fraction for e in events][-1] < 1.0  # only finish() says 1.0
    work.finish()
    assert events[-1].fraction == 1.0


def test_a_cancel_is_raised_at_the_next_unit():
    cancel = CancelToken()
    work = Work(PLAN, 1, None, cancel)
    made = []
    tiles = counted((made.append(i) or i for i in range(10)), work)
    work.begin("b", 10)
    with pytest.raises(Cancelled):
        for i in tiles:
            if i == 2:
                cancel.cancel()
    assert made == [0, 1, 2]  # the tile in progress when it was pressed, and no more


def test_builtin_tiled_one_step_job_moves_in_tiles_and_previews_between_them(monkeypatch):
    monkeypatch.setattr(pipeline, "TILE_PREVIEW_S", 0.0)
    backend = get_backend(ModelSpec())
    image = (np.random.default_rng(0).random((96, 128, 3)) * 255).astype(np.uint8)
    plain = upscale(image, backend=backend, scale=2, tile_size=64, tile_overlap=16)
    events = []
    out = upscale(image, backend=backend, scale=2, tile_size=64, tile_overlap=16, on_progress=events.append,
                  preview_every=1)
    assert np.array_equal(out, plain)  # progress and previews change no output byte
    tiles = [e for e in events if e.phase.startswith("denoising tile ")]
    assert len(tiles) >= 4 and tiles[-1].phase.endswith("/20")  # 5 x 4 tiles of 64 px (16 overlap) on 256 x 192
    previews = [e for e in events if e.preview is not None]
    assert len(previews) >= 3  # between the tiles, and at the step's end
    assert all(e.preview.shape[2] == 3 for e in previews)


def test_a_cancel_stops_a_model_call_between_its_layers():
    import threading

    import torch

    from engine.work import cancel_between_layers

    cancel = CancelToken()
    layers = []

    class Layer(torch.nn.Module):
        def forward(self, x):
            layers.append(1)
            if len(layers) == 3:
                cancel.cancel()  # pressed while the third layer runs
            return x + 1

    net = torch.nn.Sequential(*(Layer() for _ in range(8)))
    with cancel_between_layers(cancel), pytest.raises(Cancelled):
        net(torch.zeros(1))
    assert len(layers) == 3
    other = []  # another thread's modules are not this job's to stop
    with cancel_between_layers(cancel):
        thread = threading.Thread(target=lambda: other.append(net(torch.zeros(1))))
        thread.start()
        thread.join()
    assert other and float(other[0]) == 8.0
    assert float(net(torch.zeros(1))) == 8.0  # and the hook is gone after the block
