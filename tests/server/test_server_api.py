"""The engine server end to end: a real uvicorn on loopback, the tiny FLUX model, driven by the real client."""

from __future__ import annotations

import base64
import io
import stat
import threading

import numpy as np
import pytest
from PIL import Image
from server_helpers import FAST, error_of, http_request, post_job, raw_image, slow_job, wait_for

from plugin.uprez_client import Client, JobCancelled, QueueFull, RejectedInput, Unauthorized


def _run(client: Client, job_id: str) -> list[dict]:
    events: list[dict] = []
    client.wait(job_id, events.append)
    return events


def test_raw_bgra_job_streams_monotone_progress_and_returns_bgra_at_scale(client):
    job_id = client.submit_raw(raw_image(24, 16), 24, 16, "BGRA", 8, scale=2, **FAST)
    events = _run(client, job_id)
    names = [e["event"] for e in events]
    assert names[0] == "queued" and names[1] == "started" and names[-1] == "done"
    fractions = [e["fraction"] for e in events if e["event"] == "progress"]
    assert fractions and fractions == sorted(fractions) and fractions[-1] == 1.0
    assert all(e["eta_s"] is not None and e["eta_s"] >= 0 for e in events if e["event"] == "progress")
    data, meta = client.result(job_id)
    assert meta == {"format": "raw", "width": 48, "height": 32, "channels": "BGRA", "depth": 8}
    assert len(data) == 48 * 32 * 4
    assert client.job(job_id)["state"] == "done"


def test_previews_arrive_as_small_jpegs_when_asked_for(client):
    events = _run(client, client.submit_raw(raw_image(32, 32), 32, 32, scale=2, strength=0.5, steps=12,
                                            preview_every=2))
    previews = [e for e in events if e["event"] == "preview"]
    assert previews and all(e["format"] == "jpeg" for e in previews)
    with Image.open(io.BytesIO(base64.b64decode(previews[-1]["image"]))) as image:
        assert image.format == "JPEG" and image.size == (previews[-1]["width"], previews[-1]["height"])
        assert max(image.size) <= 256
    plain = _run(client, client.submit_raw(raw_image(8, 8), 8, 8, scale=2, **FAST))
    assert not any(e["event"] == "preview" for e in plain)  # off unless asked for: each costs a VAE decode


def test_png_in_png_out(client, sample_image):
    buffer = io.BytesIO()
    sample_image.resize((20, 24)).save(buffer, format="PNG")
    job_id = client.submit_file(buffer.getvalue(), scale=2, **FAST)
    client.wait(job_id)
    data, meta = client.result(job_id)
    assert data.startswith(b"\x89PNG") and meta["format"] == "png"
    with Image.open(io.BytesIO(data)) as image:
        assert image.size == (40, 48) and image.mode == "RGB"


def test_sixteen_bit_raw_in_sixteen_bit_out(client):
    job_id = client.submit_raw(raw_image(16, 16, depth=16), 16, 16, "RGBA", 16, scale=1.5, **FAST)
    client.wait(job_id)
    data, meta = client.result(job_id)
    assert (meta["depth"], meta["channels"], meta["width"], meta["height"]) == (16, "RGBA", 24, 24)
    samples = np.frombuffer(data, dtype="<u2")
    assert samples.size == 24 * 24 * 4 and samples.max() > 255  # really 16-bit, not 8-bit widened


def test_region_only_mask_adds_alpha_to_the_callers_order(client):
    mask = np.zeros((16, 16), np.uint8)
    mask[4:12, 4:12] = 255
    job_id = client.submit_raw(raw_image(16, 16, channels=3), 16, 16, "BGR", 8, mask=mask.tobytes(),
                               region_only=True, scale=2, **FAST)
    client.wait(job_id)
    data, meta = client.result(job_id)
    assert meta["channels"] == "BGRA" and len(data) == 32 * 32 * 4
    alpha = np.frombuffer(data, np.uint8).reshape(32, 32, 4)[:, :, 3]
    assert alpha[0, 0] == 0 and alpha[16, 16] == 255


def test_cancel_while_running_stops_within_a_step_and_frees_the_job(server, client):
    job_id = slow_job(client)
    wait_for(lambda: (client.job(job_id).get("progress") or {}).get("step", 0) >= 2)
    at_cancel = client.cancel(job_id)
    assert at_cancel["state"] == "running" and at_cancel["cancelling"]
    with pytest.raises(JobCancelled):
        client.wait(job_id)
    final = client.job(job_id)
    assert final["state"] == "cancelled" and final["result"] is None
    before, after = at_cancel["progress"], final["progress"]
    assert (after["stage"], after["step"]) <= (before["stage"], before["step"] + 2)
    job = server.app.state.queue.get(job_id)
    assert job.image is None and job.mask is None and job.result is None
    with pytest.raises(JobCancelled):
        client.result(job_id)


def test_closing_the_event_stream_cancels_the_job(client):
    job_id = slow_job(client)
    started = threading.Event()
    stream = client.listen(job_id, lambda e: e["event"] == "progress" and started.set())
    assert started.wait(30)
    stream.close()
    assert stream.join(10) == {"event": "closed", "job": job_id}
    assert wait_for(lambda: client.job(job_id)["state"] == "cancelled")


def test_a_watcher_that_opts_out_does_not_cancel(client):
    job_id = client.submit_raw(raw_image(16, 16), 16, 16, scale=2, **FAST)
    stream = client.listen(job_id, cancel_on_disconnect=False)
    stream.close()
    client.wait(job_id)
    assert client.job(job_id)["state"] == "done"


def test_full_queue_answers_429_with_retry_after(start_server, config_dir):
    server = start_server(queue_size=1)
    client = Client(server.url)
    running = slow_job(client)
    wait_for(lambda: client.job(running)["state"] == "running")
    queued = client.submit_raw(raw_image(16, 16), 16, 16, scale=2, **FAST)
    with pytest.raises(QueueFull) as refused:
        client.submit_raw(raw_image(16, 16), 16, 16, scale=2, **FAST)
    assert refused.value.status == 429 and refused.value.retry_after >= 1 and "queue is full" in str(refused.value)
    for job_id in (queued, running):
        client.cancel(job_id)
    assert client.job(queued)["state"] == "cancelled"
    assert wait_for(lambda: client.job(running)["state"] == "cancelled")
    assert client.health()["queue"] == 0


def test_two_clients_at_once_both_complete(server):
    results: dict[int, tuple[bytes, dict]] = {}

    def work(index: int) -> None:
        client = Client(server.url)
        job_id = client.submit_raw(raw_image(16, 16, seed=index), 16, 16, "RGBA", 8, scale=2, seed=index, **FAST)
        client.wait(job_id)
        results[index] = client.result(job_id)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert sorted(results) == [0, 1]
    assert all(len(data) == 32 * 32 * 4 for data, _meta in results.values())
    assert results[0][0] != results[1][0]


def test_health_and_models(client, tiny_flux):
    model = str(tiny_flux.resolve())
    anonymous = Client(client.url, token="")  # health needs no token
    health = wait_for(lambda: (lambda h: h if h["model"] else None)(anonymous.health()))  # loaded at start
    assert health["status"] == "ok" and health["device"] == "cpu" and health["model"] == model
    models = client.models()
    assert models["default"] == model
    listed = {m["id"]: m for m in models["models"]}
    assert listed[model]["loaded"] and listed[model]["kind"] == "diffusers"


def test_a_job_naming_another_model_switches_and_the_model_stays_loaded(client, tiny_model, tiny_flux):
    other = str(tiny_model("flux-schnell").resolve())
    assert other in {m["id"] for m in client.models()["models"]}  # found in the model folder
    job_id = client.submit_raw(raw_image(8, 8), 8, 8, model=other, scale=2, strength=0.3)
    client.wait(job_id)
    assert client.job(job_id)["params"]["model"] == other and client.health()["model"] == other
    job_id = client.submit_raw(raw_image(8, 8), 8, 8, scale=2, **FAST)  # no model: the default again
    client.wait(job_id)
    assert client.health()["model"] == str(tiny_flux.resolve())


def test_job_list_shows_jobs(client):
    job_id = client.submit_raw(raw_image(8, 8), 8, 8, scale=2, **FAST)
    client.wait(job_id)
    listed = {job["id"]: job for job in client.jobs()}
    assert listed[job_id]["state"] == "done" and listed[job_id]["params"]["scale"] == 2.0
    client.cancel(job_id)  # forgets a finished job
    assert job_id not in {job["id"] for job in client.jobs()}


# -- security ------------------------------------------------------------------------------------------
def test_no_token_and_wrong_token_are_401(server):
    for token in ("", "not-the-token"):
        with pytest.raises(Unauthorized) as refused:
            Client(server.url, token=token).jobs()
        assert refused.value.status == 401 and "token" in str(refused.value)
    status, headers, _ = http_request(server.url, "GET", "/v1/jobs", headers={"Authorization": "Basic abc"})
    assert status == 401 and headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8742", "127.0.0.1.evil.example", "[::1]x", ""])
def test_foreign_host_header_is_refused(server, client, host):
    status, _, body = http_request(server.url, "GET", "/v1/jobs",
                                   headers={"Host": host, "Authorization": f"Bearer {client.token}"})
    assert status == 421 and "Host" in error_of(body)


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost:8742", "[::1]:1234", "LOCALHOST"])
def test_loopback_host_headers_are_accepted(server, host):
    status, _, _ = http_request(server.url, "GET", "/v1/health", headers={"Host": host})
    assert status == 200


def test_token_file_is_private(server, config_dir):
    mode = stat.S_IMODE((config_dir / "token").stat().st_mode)
    assert mode == 0o600
    assert len((config_dir / "token").read_text().strip()) >= 40


def test_no_cors_headers(server):
    preflight = {"Origin": "http://evil.example", "Access-Control-Request-Method": "POST"}
    status, headers, _ = http_request(server.url, "OPTIONS", "/v1/jobs", headers=preflight)
    assert status >= 400 and not any(name.startswith("access-control-") for name in headers)


# -- bad input: a 4xx with a clear message, and the engine still healthy ----------------------------------
BAD_RAW = [
    ({"width": 4, "height": 4}, b"\0" * 10, 422, "bytes"),
    ({"width": 0, "height": 4}, b"", 422, "width"),
    ({"width": -3, "height": 4}, b"", 422, "width"),
    ({"width": 200, "height": 200}, b"\0" * 200 * 200 * 4, 413, "limit"),
    ({"width": 4, "height": 4, "scale": 1}, b"\0" * 64, 422, "scale must be more than 1"),
    ({"width": 4, "height": 4, "scale": 1000}, b"\0" * 64, 422, "scale must be at most"),
    ({"width": 4, "height": 4, "model": "/no/such/model"}, b"\0" * 64, 422, "/no/such/model"),
    ({"width": 4, "height": 4, "channels": "ARGB"}, b"\0" * 64, 422, "channels"),
    ({"width": 4, "height": 4, "depth": 12}, b"\0" * 64, 422, "depth"),
    ({"width": 4, "height": 4, "strength": True}, b"\0" * 64, 422, "strength"),
    ({"width": 4, "height": 4, "colour": 1}, b"\0" * 64, 422, "unknown parameter"),
]


@pytest.mark.parametrize(("params", "image", "status", "words"), BAD_RAW)
def test_bad_raw_requests_are_refused_clearly(client, params, image, status, words):
    got, _, body = post_job(client.url, client.token, dict(params, format="raw"), image)
    assert got == status and words in error_of(body)
    assert client.health()["status"] == "ok"


def test_bad_requests_through_the_client_raise_rejected_input(client):
    with pytest.raises(RejectedInput) as refused:
        client.submit_raw(b"\0" * 10, 4, 4)
    assert refused.value.status == 422 and "64" in str(refused.value)


def test_malformed_json_params(client):
    status, _, body = post_job(client.url, client.token, '{"scale": 2,', raw_image(4, 4))
    assert status == 422 and "not valid JSON" in error_of(body)
    status, _, body = post_job(client.url, client.token, '[1, 2]', raw_image(4, 4))
    assert status == 422 and "JSON object" in error_of(body)


def test_mask_of_another_size(client):
    with pytest.raises(RejectedInput) as refused:
        client.submit_raw(raw_image(8, 8), 8, 8, mask=b"\xff" * 30)
    assert refused.value.status == 422 and "mask" in str(refused.value) and "64" in str(refused.value)
    png = io.BytesIO()
    Image.new("L", (5, 5), 255).save(png, format="PNG")
    with pytest.raises(RejectedInput, match="5x5 but the image is 8x8"):
        client.submit_raw(raw_image(8, 8), 8, 8, mask=png.getvalue())


def test_truncated_png(client, sample_image):
    png = io.BytesIO()
    sample_image.save(png, format="PNG")
    with pytest.raises(RejectedInput) as refused:
        client.submit_file(png.getvalue()[: len(png.getvalue()) // 2], scale=2)
    assert refused.value.status == 422 and "PNG" in str(refused.value)
    assert client.health()["status"] == "ok"


def test_oversized_upload_is_413(client):
    with pytest.raises(RejectedInput) as refused:
        client.submit_raw(b"\0" * (3 * 2**20), 1024, 768, "RGBA", 8)
    assert refused.value.status == 413
    assert client.health()["status"] == "ok"


def test_oversized_output_is_413(client):
    with pytest.raises(RejectedInput, match="result would be"):
        client.submit_raw(raw_image(100, 100), 100, 100, scale=8)


def test_unknown_job_id_is_404_everywhere(client):
    for call in (client.job, client.result, client.cancel, client.events):
        with pytest.raises(RejectedInput) as refused:
            call("no-such-job")
        assert refused.value.status == 404 and "no job" in str(refused.value)


def test_wrong_content_type_and_missing_parts(client):
    auth = {"Authorization": f"Bearer {client.token}"}
    status, _, body = http_request(client.url, "POST", "/v1/jobs", b"{}", dict(auth, **{"Content-Type": "a/b"}))
    assert status == 415 and "multipart" in error_of(body)
    status, _, body = post_job(client.url, client.token, {}, b"")
    assert status == 422


def test_a_preset_travels_and_an_unknown_one_is_refused(client):
    job = client.submit_raw(raw_image(16, 16), 16, 16, "RGBA", 8, preset="faithful", **FAST)
    client.wait(job)
    assert client.job(job)["params"]["preset"] == "faithful"
    with pytest.raises(RejectedInput, match="preset must be one of"):
        client.submit_raw(raw_image(16, 16), 16, 16, "RGBA", 8, preset="vivid")


def test_a_job_carries_the_name_of_the_app_that_sent_it(client):
    job = client.submit_raw(raw_image(16, 16), 16, 16, "RGBA", 8, client="Krita", **FAST)
    client.wait(job)
    assert client.job(job)["params"]["client"] == "Krita"
    with pytest.raises(RejectedInput, match="client must be a short printable name"):
        client.submit_raw(raw_image(16, 16), 16, 16, "RGBA", 8, client="x" * 65)
