"""JobEvent.from_engine on the engine's event data, and status_text: the one status line of every front end."""

from __future__ import annotations

import base64

import pytest

from plugin.uprez_client import JobEvent, ResultInfo, status_text
from plugin.uprez_client.idle import IDLE_UNLOADED


def test_engine_data_becomes_typed_fields():
    progress = JobEvent.from_engine({"event": "progress", "job": "j1", "seq": 4, "stage": 1, "stages": 2, "step": 3,
                                     "steps": 5, "fraction": 0.3, "sigma": 0.2, "elapsed_s": 1.0, "eta_s": 4.2,
                                     "phase": "stage 1/2: denoising tile 3/9 (step 3/5)"})
    assert progress == JobEvent("progress", "j1", 0.3, "stage 1/2: denoising tile 3/9 (step 3/5)", 1, 2, 3, 5, 4.2)
    done = JobEvent.from_engine({"event": "done", "job": "j1", "format": "raw", "width": 8, "height": 6,
                                 "channels": "BGRA", "depth": 16, "bytes": 384})
    assert done.final and done.fraction == 1.0 and done.result == ResultInfo("raw", 8, 6, "BGRA", 16, 384)
    assert JobEvent.from_engine({"event": "queued", "position": 2}) == JobEvent("queued", fraction=0.0, position=2)
    assert JobEvent.from_engine({"event": "failed", "message": "too big"}).message == "too big"
    jpeg = b"\xff\xd8\xff\xe0fake"
    preview = JobEvent.from_engine({"event": "preview", "image": base64.b64encode(jpeg).decode(), "format": "jpeg"})
    assert preview.preview == jpeg


def test_fields_of_the_wrong_type_are_left_out_rather_than_trusted():
    odd = JobEvent.from_engine({"event": "progress", "fraction": "half", "stage": True, "eta_s": None, "phase": 7,
                                "job": 12})
    assert odd == JobEvent("progress")
    assert JobEvent.from_engine({"event": "preview", "image": "not base64!"}).preview is None


@pytest.mark.parametrize(("event", "text"), [
    (JobEvent("starting_engine"), "Starting the Uprez engine"),
    (JobEvent("engine_idle", message=IDLE_UNLOADED), "Uprez engine idle, model unloaded: loading it for this upscale"),
    (JobEvent("submitted", "j1"), "Sent to the engine"),
    (JobEvent("queued", position=2), "Waiting in the engine's queue (position 2)"),
    (JobEvent("queued"), "Waiting in the engine's queue"),
    (JobEvent("started", model="/models/flux1-schnell/"), "Upscaling with flux1-schnell (loading it first if needed)"),
    (JobEvent("progress", fraction=0.3, stage=1, stages=2, step=3, steps=5, eta_s=4.2),
     "Upscaling: stage 1/2 · step 3/5 · about 4 s left"),
    (JobEvent("progress", fraction=1.0, stage=2, stages=2, step=5, steps=5, eta_s=0.0),
     "Upscaling: stage 2/2 · step 5/5"),
    (JobEvent("progress", fraction=0.41, phase="stage 2/2: decoding tile 7/30", eta_s=12.4),
     "Upscaling: stage 2/2: decoding tile 7/30 · about 12 s left"),
    (JobEvent("progress", fraction=0.1, phase="denoising tile 1/30", eta_s=300),
     "Upscaling: denoising tile 1/30 · about 5 min left"),
    (JobEvent("progress", fraction=0.99, phase="finishing", eta_s=0.2),
     "Upscaling: finishing · less than a second left"),
    (JobEvent("retrying", message="out of memory"),
     "Out of memory: the engine retries with smaller tiles (out of memory)"),
    (JobEvent("done"), "Done: fetching the result"),
    (JobEvent("failed", message="the scale is too large; pick 2x"), "Failed: the scale is too large; pick 2x"),
    (JobEvent("cancelled", message="cancelled by the user"), "Cancelled: cancelled by the user"),
    (JobEvent("preview", preview=b"jpeg"), ""),  # the line stays as it is
    (JobEvent("something-newer"), ""),
])
def test_status_text(event, text):
    assert status_text(event) == text
