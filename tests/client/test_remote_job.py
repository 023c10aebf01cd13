"""Client.start -> RemoteJob against a real engine on 127.0.0.1 (tiny FLUX model): the typed event sequence,
cancelling before the job id is known, during the run, closing, and errors of the upload."""

from __future__ import annotations

import dataclasses
import threading
import time

import pytest

from plugin.uprez_client import (
    Client,
    JobCancelled,
    JobEvent,
    RejectedInput,
    RemoteJob,
    ResultInfo,
    status_text,
)

SLOW = {"steps": 200, "strength": 1.0, "scale": 4}  # seconds of work on the tiny model
ENGINE_KINDS = {"queued", "started", "progress", "preview", "retrying", "done", "failed", "cancelled"}


def pixels(width: int, height: int) -> bytes:
    return bytes((x * 7 + y * 13 + c * 50) % 256 for y in range(height) for x in range(width) for c in range(4))


class GatedClient(Client):
    """The engine has the job, but its answer to the upload is held back until `gate` opens: the moment a
    RemoteJob has no job id yet while the upload is in flight."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.gate = threading.Event()
        self.job_ids: list[str] = []

    def submit_raw(self, *args, **kwargs) -> str:
        job_id = super().submit_raw(*args, **kwargs)
        self.job_ids.append(job_id)
        assert self.gate.wait(30), "the test never opened the gate"
        return job_id


def wait_for_state(client: Client, job_id: str, states: tuple[str, ...], timeout: float = 30.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        state = client.job(job_id)["state"]
        if state in states or time.monotonic() > deadline:
            return state
        time.sleep(0.05)


def test_events_are_typed_frozen_and_in_order_and_the_result_matches_done(client):
    job = client.start(pixels(16, 12), 16, 12, "RGBA", 8, scale=2, steps=4, seed=3, preview_every=1)
    assert isinstance(job, RemoteJob)
    events = list(job.events())
    assert all(type(event) is JobEvent for event in events)
    kinds = [event.kind for event in events]
    assert kinds[0] == "submitted" and events[0].job == job.id is not None
    assert set(kinds[1:]) <= ENGINE_KINDS and kinds[-1] == "done" and kinds.count("done") == 1
    assert {"started", "progress", "preview"} <= set(kinds)
    assert all(event.job == job.id for event in events)
    fractions = [event.fraction for event in events if event.kind == "progress"]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0 and all(0 < f <= 1 for f in fractions)
    progress = next(event for event in events if event.kind == "progress")
    assert progress.phase and progress.stages >= 1 and progress.steps >= 1 and progress.eta_s is not None
    preview = next(event for event in events if event.kind == "preview")
    assert preview.preview is not None and preview.preview[:2] == b"\xff\xd8"  # a JPEG
    done = events[-1]
    assert job.final == done and done.fraction == 1.0
    with pytest.raises(dataclasses.FrozenInstanceError):
        done.kind = "failed"  # type: ignore[misc]
    data, meta = job.result()
    assert done.result == ResultInfo("raw", 32, 24, "RGBA", 8, len(data)) and len(data) == 32 * 24 * 4
    assert (meta["width"], meta["height"]) == (32, 24)
    # the same bytes as the blocking calls give: start() sends exactly what submit_raw sends
    assert client.upscale_raw(pixels(16, 12), 16, 12, "RGBA", 8, scale=2, steps=4, seed=3)[0] == data


def test_a_cancel_before_the_job_id_is_known_is_sent_when_it_arrives_and_the_job_ends_cancelled(server, client):
    gated = GatedClient(server.url)
    job = gated.start(pixels(48, 40), 48, 40, "RGBA", 8, **SLOW)
    deadline = time.monotonic() + 30
    while not gated.job_ids and time.monotonic() < deadline:
        time.sleep(0.01)
    assert gated.job_ids and job.id is None  # the engine has the job; the handle does not know its id yet
    job.cancel()
    gated.gate.set()
    events = list(job.events())
    assert [e.kind for e in events][0] == "submitted" and events[-1].kind == "cancelled"
    assert job.final is events[-1] and job.id == gated.job_ids[0]
    assert wait_for_state(client, job.id, ("cancelled",)) == "cancelled"
    with pytest.raises(JobCancelled):
        job.wait()  # the stream is over: wait() says how it ended


def test_a_cancel_right_after_start_ends_the_job_cancelled(server, client):
    job = client.start(pixels(48, 40), 48, 40, "RGBA", 8, **SLOW)
    job.cancel()  # most likely during the upload; whenever it lands, the job ends cancelled
    with pytest.raises(JobCancelled):
        job.wait()
    assert job.final is not None and job.final.kind == "cancelled"
    if job.id is not None:
        assert wait_for_state(client, job.id, ("cancelled",)) == "cancelled"


def test_a_cancel_while_running_stops_the_job(client):
    job = client.start(pixels(48, 40), 48, 40, "RGBA", 8, **SLOW)
    seen = []
    for event in job.events():
        seen.append(event.kind)
        if event.kind == "progress":
            job.cancel()
            job.cancel()  # twice is once: a second DELETE would make the engine forget the job
    assert seen[-1] == "cancelled" and "done" not in seen
    assert client.job(job.id)["state"] == "cancelled"  # still remembered: one DELETE only


def test_closing_before_the_id_arrives_cancels_the_job_on_the_engine(server, client):
    gated = GatedClient(server.url)
    job = gated.start(pixels(48, 40), 48, 40, "RGBA", 8, **SLOW)
    deadline = time.monotonic() + 30
    while not gated.job_ids and time.monotonic() < deadline:
        time.sleep(0.01)
    job.close()  # the front end goes away: nobody will follow this job
    gated.gate.set()
    list(job.events())  # ends without waiting for the job
    assert wait_for_state(client, gated.job_ids[0], ("cancelled",)) == "cancelled"


def test_closing_while_followed_hangs_up_and_the_engine_cancels(client):
    job = client.start(pixels(48, 40), 48, 40, "RGBA", 8, **SLOW)
    for event in job.events():
        if event.kind == "progress":
            job.close()
    assert job.final is None  # it was left, not finished
    assert wait_for_state(client, job.id, ("cancelled",)) == "cancelled"


def test_an_upload_the_engine_refuses_comes_out_of_events_as_its_error(client):
    job = client.start(b"short", 16, 16, "RGBA", 8, scale=2)
    with pytest.raises(RejectedInput, match="bytes|buffer"):
        list(job.events())
    assert job.id is None and job.final is None
    with pytest.raises(RejectedInput):
        list(job.events())  # a second reader is told too, rather than waiting forever


def test_bad_arguments_are_refused_before_anything_is_sent(client):
    with pytest.raises(ValueError, match="PNG and TIFF"):
        client.start(b"GIF89a....")
    with pytest.raises(ValueError, match="width and height"):
        client.start(pixels(4, 4), 4)


def test_a_file_job_comes_back_as_the_same_format(client, sample_png):
    job = client.start(str(sample_png), scale=2, steps=1, seed=0)
    final = job.wait()
    data, meta = job.result()
    assert final.result is not None and final.result.format == "png" == meta["format"] and data[:4] == b"\x89PNG"
    assert status_text(final) == "Done: fetching the result"
