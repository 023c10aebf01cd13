"""The server's parts on their own: wire codec, the request type, security helpers, and the job queue."""

from __future__ import annotations

import io
import os
import stat
import threading
import time

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from engine.errors import DeviceError, InvalidInput
from engine.progress import ProgressEvent
from engine.server.codec import ImageFormat, decode_image, decode_mask, encode_result, image_size
from engine.server.config import ServerConfig, remove_engine_file, write_engine_file
from engine.server.jobs import JobQueue, JobState, QueueFull
from engine.server.request import JobRequest, parse_params
from engine.server.security import HostPolicy, UnsafeConfig, load_or_create_token, token_matches
from engine.settings import UpscaleSettings


# -- codec ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("order", ["RGBA", "BGRA", "RGB", "BGR", "L", "LA"])
@pytest.mark.parametrize("depth", [8, 16, 32])
def test_raw_round_trip_keeps_order_and_depth(order, depth):
    rng = np.random.default_rng(1)
    dtype = {8: np.uint8, 16: np.dtype("<u2"), 32: np.dtype("<f4")}[depth]
    caller = (rng.random((3, 5, len(order))) * (1 if depth == 32 else 255 if depth == 8 else 65535)).astype(dtype)
    fmt = ImageFormat("raw", 5, 3, order, depth)
    engine = decode_image(caller.tobytes(), fmt)
    if order.startswith("B"):
        assert np.array_equal(engine[:, :, 0], caller[:, :, 2])  # the engine always sees red first
    data, meta = encode_result(engine, fmt)
    assert data == caller.tobytes()
    assert meta == {"format": "raw", "width": 5, "height": 3, "channels": order, "depth": depth}


def test_region_alpha_is_appended_in_the_callers_order():
    fmt = ImageFormat("raw", 1, 1, "BGR", 8)
    data, meta = encode_result(np.array([[[10, 20, 30, 40]]], np.uint8), fmt)  # engine RGBA
    assert data == bytes([30, 20, 10, 40]) and meta["channels"] == "BGRA"


@pytest.mark.parametrize(("mode", "dtype"), [("RGB", np.uint8), ("RGBA", np.uint8), ("L", np.uint8),
                                             ("RGB", np.uint16), ("RGBA", np.uint16)])
def test_png_round_trip(mode, dtype):
    planes = {"RGB": 3, "RGBA": 4, "L": 1}[mode]
    top = 255 if dtype == np.uint8 else 65535
    array = (np.random.default_rng(2).random((6, 7, planes)) * top).astype(dtype)
    data, meta = encode_result(array, ImageFormat("png"))
    assert meta["width"] == 7 and meta["depth"] == np.dtype(dtype).itemsize * 8
    assert image_size(data, ImageFormat("png")) == (7, 6)
    assert np.array_equal(decode_image(data, ImageFormat("png")), array)


def test_tiff_round_trip_16_bit_rgba():
    array = (np.random.default_rng(3).random((4, 9, 4)) * 65535).astype(np.uint16)
    data, _ = encode_result(array, ImageFormat("tiff"))
    assert image_size(data, ImageFormat("tiff")) == (9, 4)
    assert np.array_equal(decode_image(data, ImageFormat("tiff")), array)


def test_file_of_the_wrong_kind_and_garbage():
    with pytest.raises(InvalidInput, match="not a TIFF"):
        image_size(b"\x89PNG\r\n\x1a\n" + b"\0" * 30, ImageFormat("tiff"))
    with pytest.raises(InvalidInput, match="truncated"):
        image_size(b"\x89PNG\r\n\x1a\n", ImageFormat("png"))
    with pytest.raises(InvalidInput):
        decode_image(b"II*\x00garbage", ImageFormat("tiff"))


def test_masks_raw_and_png():
    assert decode_mask(bytes(range(6)), "raw", (3, 2)).shape == (2, 3)
    png = io.BytesIO()
    Image.new("RGB", (3, 2), (255, 255, 255)).save(png, format="PNG")
    assert decode_mask(png.getvalue(), "png", (3, 2)).tolist() == [[255] * 3] * 2
    deep, _ = encode_result(np.zeros((2, 3, 1), np.uint16), ImageFormat("png"))
    with pytest.raises(InvalidInput, match="8-bit"):
        decode_mask(deep, "png", (3, 2))


# -- the request type -----------------------------------------------------------------------------------
requests = st.builds(
    JobRequest,
    settings=st.builds(UpscaleSettings, scale=st.floats(1.01, 16), strength=st.floats(0, 1),
                       steps=st.none() | st.integers(1, 200), seed=st.integers(0, 2**63 - 1),
                       prompt=st.text(max_size=20), cfg_scale=st.none() | st.floats(0, 30)),
    image=st.one_of(st.builds(ImageFormat, kind=st.sampled_from(["png", "tiff"])),
                    st.builds(ImageFormat, kind=st.just("raw"), width=st.integers(1, 9999),
                              height=st.integers(1, 9999), channels=st.sampled_from(["RGBA", "BGRA", "L"]),
                              depth=st.sampled_from([8, 16, 32]))),
    model=st.none() | st.text(min_size=1, max_size=30),
    region_only=st.just(False),
    mask_format=st.none() | st.sampled_from(["raw", "png"]),
    preview_every=st.integers(0, 1000),
)


@given(requests)
@settings(max_examples=150, deadline=None)
def test_request_round_trips_through_params_json(request):
    import json

    params = parse_params(json.dumps(request.to_params()))
    assert JobRequest.from_params(params, has_mask=request.mask_format is not None) == request


@pytest.mark.parametrize(("params", "words"), [
    ({"scale": 1e400}, "finite"), ({"scale": True}, "number"), ({"steps": 2.5}, "whole number"),
    ({"region_only": True, "format": "png"}, "needs a mask"), ({"format": "png", "width": 3}, "only apply to raw"),
    ({"format": "gif"}, "format must be"), ({}, "cannot tell the image format"), ({"seed": -1}, "seed"),
    ({"format": "png", "preview_every": -1}, "preview_every"),
])
def test_bad_params_name_the_value(params, words):
    import json

    with pytest.raises(InvalidInput, match=words):
        JobRequest.from_params(parse_params(json.dumps(params).replace("Infinity", "1e400")))


# -- security helpers -----------------------------------------------------------------------------------
def test_token_is_created_private_once_and_reused(tmp_path):
    token = load_or_create_token(tmp_path / "cfg")
    path = tmp_path / "cfg" / "token"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and len(token) >= 40
    os.chmod(path, 0o644)
    with pytest.raises(UnsafeConfig, match="can be read by others"):  # it may have leaked: refused, not re-chmod'ed
        load_or_create_token(tmp_path / "cfg")
    os.chmod(path, 0o600)
    assert load_or_create_token(tmp_path / "cfg") == token
    path.write_text("short")
    assert load_or_create_token(tmp_path / "cfg") != "short"  # a guessable token is replaced


def test_token_matches():
    assert token_matches("Bearer abc", "abc") and token_matches("bearer abc", "abc")
    assert not any(token_matches(h, "abc") for h in (None, "", "abc", "Bearer abd", "Basic abc", "Bearer "))


@pytest.mark.parametrize(("bind", "extra", "host", "ok"), [
    ("127.0.0.1", (), "127.0.0.1:8742", True), ("127.0.0.1", (), "localhost", True),
    ("127.0.0.1", (), "[::1]:8742", True), ("127.0.0.1", (), "evil.example", False),
    ("127.0.0.1", (), "192.168.1.5", False), ("127.0.0.1", (), "localhost:port", False),
    ("0.0.0.0", (), "192.168.1.5:8742", True), ("0.0.0.0", (), "myhost.lan", False),
    ("0.0.0.0", ("myhost.lan",), "myhost.lan:8742", True), ("192.168.1.5", (), "192.168.1.5", True),
])
def test_host_policy(bind, extra, host, ok):
    assert HostPolicy(bind, extra).allows(host) is ok


def test_engine_file_is_written_and_removed_only_by_its_owner(tmp_path):
    write_engine_file(tmp_path, "http://127.0.0.1:1234", pid=42)
    remove_engine_file(tmp_path, pid=41)
    assert (tmp_path / "engine.json").exists()
    remove_engine_file(tmp_path, pid=42)
    assert not (tmp_path / "engine.json").exists()


def test_config_refuses_nonsense():
    with pytest.raises(InvalidInput, match="port"):
        ServerConfig(port=70000)


# -- the job queue, with a fake runner -------------------------------------------------------------------
def _request() -> JobRequest:
    return JobRequest(image=ImageFormat("raw", 2, 2, "RGBA", 8), model="m")


def _image() -> np.ndarray:
    return np.zeros((2, 2, 4), np.uint8)


def test_out_of_memory_is_retried_once_then_fails_with_advice():
    # A stand-in runner raises the errors: a real CUDA out-of-memory cannot happen on this CPU-only machine.
    calls = []

    def runner(job, on_progress):
        calls.append(job.id)
        if len(calls) == 1:
            raise torch.OutOfMemoryError("CUDA out of memory")
        on_progress(ProgressEvent(1, 1, 1, 1, 1.0, 0.0))
        return b"ok", {"format": "raw"}

    queue = JobQueue(runner)
    queue.start()
    job = queue.submit(_request(), _image())
    _wait_terminal(job)
    assert job.state is JobState.DONE and len(calls) == 2
    assert "retrying" in [e["event"] for e in job.events]

    def always_oom(job, on_progress):
        raise DeviceError("cuda ran out of memory at 4096x4096; use a smaller scale")

    queue.runner = always_oom
    failed = queue.submit(_request(), _image())
    _wait_terminal(failed)
    queue.stop()
    assert failed.state is JobState.FAILED
    assert "smaller scale" in failed.message and "--memory" in failed.message and "region" in failed.message


def test_unexpected_errors_fail_the_job_not_the_worker():
    queue = JobQueue(lambda job, on_progress: 1 / 0)
    queue.start()
    first, second = queue.submit(_request(), _image()), queue.submit(_request(), _image())
    _wait_terminal(second)
    queue.stop()
    assert first.state is second.state is JobState.FAILED and "ZeroDivisionError" in first.message


def test_results_expire_after_the_ttl():
    now = [1000.0]
    queue = JobQueue(lambda job, on_progress: (b"x" * 10, {"format": "raw"}), result_ttl=60, clock=lambda: now[0])
    queue.start()
    job = queue.submit(_request(), _image())
    _wait_terminal(job)
    assert queue.get(job.id).result == b"x" * 10 and job.image is None
    now[0] += 61
    with pytest.raises(LookupError, match="forgotten"):
        queue.get(job.id)
    assert job.result is None
    queue.stop()


def test_finished_results_are_capped_by_bytes_not_only_by_count():
    queue = JobQueue(lambda job, on_progress: (b"x" * 1000, {"format": "raw"}), keep_result_bytes=2500)
    queue.start()
    jobs = []
    for _ in range(4):
        jobs.append(queue.submit(_request(), _image()))
        _wait_terminal(jobs[-1])
    queue.summaries()  # sweeps
    queue.stop()
    assert [job.result is not None for job in jobs] == [False, False, True, True]
    with pytest.raises(LookupError, match="MiB together"):
        queue.get(jobs[0].id)


def test_retry_after_follows_the_running_jobs_eta_not_the_recent_average():
    release = threading.Event()

    def runner(job, on_progress):
        if job.request.model == "slow":  # 1% done after 0.3 s: about 30 s to go
            time.sleep(0.3)
            on_progress(ProgressEvent(1, 1, 1, 100, 0.01, 0.5))
            release.wait(10)
        return b"", {"format": "raw"}

    queue = JobQueue(runner, queue_size=1)
    queue.start()
    _wait_terminal(queue.submit(_request(), _image()))  # a quick job: the recent average is ~0 s
    slow = queue.submit(JobRequest(image=ImageFormat("raw", 2, 2, "RGBA", 8), model="slow"), _image())
    while slow.progress is None:
        time.sleep(0.01)
    queue.submit(_request(), _image())
    with pytest.raises(QueueFull) as full:
        queue.submit(_request(), _image())
    release.set()
    queue.stop()
    eta = slow.progress["eta_s"]
    assert eta > 20 and full.value.retry_after >= eta * 0.9, (full.value.retry_after, eta)


def test_queue_bound_and_cancel_of_a_queued_job():
    release = threading.Event()

    def runner(job, on_progress):
        release.wait(10)
        return b"", {"format": "raw"}

    queue = JobQueue(runner, queue_size=1)
    queue.start()
    running = queue.submit(_request(), _image())
    while queue.running is None:
        time.sleep(0.01)
    waiting = queue.submit(_request(), _image())
    with pytest.raises(QueueFull) as full:
        queue.submit(_request(), _image())
    assert full.value.retry_after >= 1
    queue.cancel(waiting.id)
    assert waiting.state is JobState.CANCELLED and waiting.image is None and queue.waiting == 0
    release.set()
    _wait_terminal(running)
    queue.stop()
    assert running.state is JobState.DONE


def _wait_terminal(job, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not job.terminal:
        assert time.monotonic() < deadline, f"job stuck in {job.state}"
        time.sleep(0.01)


def test_the_retry_after_running_out_of_memory_uses_tiles_of_half_the_side():
    # No GPU here to run out of: the real built-in model stands in, refusing tiles over 128x128 pixels as a
    # small GPU would. The queue, the runner and the tiled pipeline are the real ones.
    from engine.backends.loader import load_backend
    from engine.builtin.backend import BuiltinBackend
    from engine.server.runner import EngineRunner

    class SmallDevice(BuiltinBackend):
        tiles: list[int] = []

        def velocity(self, x, sigma, cond):  # noqa: ANN001, ANN201
            self.tiles.append(x.shape[-1])
            if x.shape[-1] * x.shape[-2] > 128 * 128:
                raise torch.OutOfMemoryError("CUDA out of memory (stand-in)")
            return super().velocity(x, sigma, cond)

    shipped = load_backend("builtin", device="cpu")
    backend = SmallDevice(shipped.net, shipped.info, source="builtin", device=torch.device("cpu"), dtype=torch.float32)
    runner = EngineRunner(ServerConfig(model="builtin", device="cpu"))
    runner.models.put(runner.spec("builtin"), backend)  # the runner's own loaded model, as its cache hands it
    queue = JobQueue(runner)
    queue.start()
    request = JobRequest(settings=UpscaleSettings(tile_size=256), image=ImageFormat("raw", 150, 150, "RGBA", 8),
                         model="builtin")
    job = queue.submit(request, np.full((150, 150, 4), 128, np.uint8))
    _wait_terminal(job, timeout=60)
    queue.stop()
    assert job.state is JobState.DONE, job.message
    assert "retrying" in [e["event"] for e in job.events]
    # Tiles are spread evenly at most the tile size (engine.tile_grid.spread_windows): 182 px of at most 256 on the
    # first try (too big here), then 122 px of at most 128.
    assert backend.tiles[0] == 182 and set(backend.tiles[1:]) == {122}
