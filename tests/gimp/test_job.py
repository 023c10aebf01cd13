"""The plug-in's round trip with a real engine (built-in model on 127.0.0.1): pixels, masks, depths,
progress, the engine missing, and the engine cancelling the job of a plug-in that GIMP killed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from uprez_client import Client, EngineNotRunning
from uprez_gimp import formats, job

ROOT = Path(__file__).resolve().parents[2]
PLUGIN_DIR = ROOT / "plugin" / "gimp" / "uprez-upscale"
W, H = 80, 64


def pattern(depth: int) -> np.ndarray:
    """An opaque RGBA test card with edges and texture, at the dtype of `depth`."""
    yy, xx = np.mgrid[0:H, 0:W]
    rgb = np.stack([(xx * 3) % 256, (yy * 4) % 256, ((xx // 8 + yy // 8) % 2) * 200 + 20], -1) / 255.0
    rgba = np.concatenate([rgb, np.ones((H, W, 1))], -1)
    if depth == 8:
        return np.round(rgba * 255).astype("<u1")
    if depth == 16:
        return np.round(rgba * 65535).astype("<u2")
    return rgba.astype("<f4")


def ellipse_mask() -> bytes:
    yy, xx = np.mgrid[0:H, 0:W]
    inside = ((xx - 40) / 20.0) ** 2 + ((yy - 32) / 15.0) ** 2
    return (np.clip((1.2 - inside) / 0.4, 0, 1) * 255).astype(np.uint8).tobytes()  # soft edge


def as_float(pixels: bytes, depth: int, width: int, height: int) -> np.ndarray:
    dtype, top = {8: ("<u1", 255.0), 16: ("<u2", 65535.0), 32: ("<f4", 1.0)}[depth]
    return np.frombuffer(pixels, dtype).reshape(height, width, 4).astype(np.float64) / top


def bicubic_2x(rgba: np.ndarray) -> np.ndarray:
    eight = Image.fromarray(np.round(rgba[..., :3] * 255).astype(np.uint8))
    return np.asarray(eight.resize((2 * W, 2 * H), Image.Resampling.BICUBIC)).astype(np.float64) / 255.0


@pytest.mark.parametrize("precision", ["u8-non-linear", "u16-linear", "float-non-linear"])
def test_a_whole_layer_comes_back_at_twice_the_size_in_its_own_depth(gimp_client, precision):
    transfer = formats.transfer_for(precision)
    source = pattern(transfer.depth)
    seen, ids = [], []
    data, width, height = job.run_job(gimp_client, source.tobytes(), W, H, transfer,
                                      {"scale": 2.0, "preset": "balanced", "seed": 3},
                                      on_progress=lambda f, t: seen.append((f, t)), on_submitted=ids.append)
    assert gimp_client.job(ids[0])["params"]["client"] == "GIMP"  # other apps' queue views name it
    assert (width, height) == (2 * W, 2 * H) and len(data) == transfer.size(2 * W, 2 * H)
    out = as_float(data, transfer.depth, width, height)
    assert out[..., 3].min() == 1.0  # opaque in, opaque out
    rmse = np.sqrt(np.mean((out[..., :3] - bicubic_2x(as_float(source.tobytes(), transfer.depth, W, H))) ** 2))
    assert rmse < 0.08, rmse  # the same picture, upscaled
    assert seen[-1] == (1.0, "Done: fetching the result")
    # the engine's phase text, as the client's status_text puts it ("Upscaling: decoding tile 3/9 · ..."),
    # ending at the phase "done"
    phases = [text[len("Upscaling: "):].split(" · ")[0] for _, text in seen if text and text.startswith("Upscaling: ")]
    assert "done" in phases and all(
        phase.split(": ")[-1].split(" ")[0] in {"upsampling", "encoding", "reference", "denoising", "decoding",
                                                "finishing", "done"} for phase in phases), phases
    # the plug-in sends exactly what a script would: same seed and settings, same bytes
    direct, _ = gimp_client.upscale_raw(source.tobytes(), W, H, "RGBA", transfer.depth, scale=2.0,
                                        preset="balanced", seed=3)
    assert direct == data


def test_a_selection_comes_back_with_its_mask_as_alpha_and_nothing_outside(gimp_client):
    source = pattern(8)
    submitted = []
    data, width, height = job.run_job(gimp_client, source.tobytes(), W, H, formats.U8,
                                      {"scale": 2.0, "preset": "balanced", "seed": 0}, mask=ellipse_mask(),
                                      on_submitted=submitted.append)
    assert gimp_client.job(submitted[0])["params"]["region_only"] is True
    out = as_float(data, 8, width, height)
    mask_2x = np.asarray(Image.frombytes("L", (W, H), ellipse_mask()).resize((2 * W, 2 * H), Image.BILINEAR))
    outside, inside = mask_2x == 0, mask_2x == 255
    assert out[..., 3][outside].max() < 0.05 and out[..., 3][inside].min() > 0.95
    difference = np.abs(out[..., :3] - bicubic_2x(as_float(source.tobytes(), 8, W, H)))
    assert difference[inside].mean() < 0.08  # the same picture,
    assert difference[inside].mean() > 2 * difference[outside].mean()  # redrawn inside; a plain resize outside


def test_a_missing_engine_says_to_start_uprez_serve(monkeypatch, tmp_path):
    monkeypatch.setenv("UPREZ_CONFIG_DIR", str(tmp_path))  # no bridge.json: nothing to start it with
    with pytest.raises(EngineNotRunning) as caught:
        job.connect(Client("http://127.0.0.1:9"))
    message = job.explain(caught.value)
    assert "http://127.0.0.1:9" in message and "`uprez serve`" in message


def test_the_engine_is_started_when_the_installer_said_how(monkeypatch, tmp_path):
    monkeypatch.setenv("UPREZ_CONFIG_DIR", str(tmp_path))
    (tmp_path / "bridge.json").write_text(json.dumps({"start_command": [sys.executable, "-c", "exit(3)"]}))
    seen = []
    with pytest.raises(EngineNotRunning, match="exited with code 3"):
        job.connect(Client("http://127.0.0.1:9"), on_progress=lambda f, t: seen.append(t))
    assert seen == ["Starting the Uprez engine"]


CHILD = """
import sys
from uprez_client import Client
from uprez_gimp import formats, job
size = 128
job.run_job(Client(sys.argv[1]), bytes(size * size * 4), size, size, formats.U8, {"scale": 2.0, "steps": 200},
            on_progress=lambda f, t: print("progress", f, flush=True),
            on_submitted=lambda job_id: print("job", job_id, flush=True))
print("finished", flush=True)
"""


def test_a_plug_in_killed_mid_job_gets_its_job_cancelled_by_the_engine(gimp_client, builtin_engine):
    """GIMP kills a plug-in whose progress the user cancels (SIGKILL): the engine must stop the job."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(PLUGIN_DIR), str(ROOT / "plugin")]))
    child = subprocess.Popen([sys.executable, "-c", CHILD, builtin_engine.url], stdout=subprocess.PIPE, text=True,
                             env=env)
    try:
        job_id = None
        for line in child.stdout:
            if line.startswith("job "):
                job_id = line.split()[1]
            if line.startswith("progress") and gimp_client.job(job_id)["state"] == "running":
                break
        assert job_id is not None, "the child ended before its job ran"
        child.send_signal(signal.SIGKILL)
        child.wait(10)
        deadline = time.monotonic() + 60
        while gimp_client.job(job_id)["state"] not in ("done", "failed", "cancelled") and time.monotonic() < deadline:
            time.sleep(0.1)
        state = gimp_client.job(job_id)
        assert state["state"] == "cancelled", state
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


def test_an_engine_that_unloaded_its_model_shows_as_idle_not_as_an_error(config_dir):
    """The progress text says "engine idle, model unloaded" and the upscale goes on: the model loads again."""
    from engine.server import ServerConfig, start_in_thread
    from engine.server.idle import IdlePolicy

    server = start_in_thread(ServerConfig(host="127.0.0.1", port=0, model="builtin", device="cpu",
                                          config_dir=config_dir, idle=IdlePolicy(unload_after=0.5)))
    try:
        client = Client(server.url)
        deadline = time.monotonic() + 30
        while not client.health()["idle_unloaded"]:
            assert time.monotonic() < deadline, "the engine did not unload its model"
            time.sleep(0.1)
        seen = []
        connected = job.connect(client, on_progress=lambda f, t: seen.append(t))
        assert seen == ["Uprez engine idle, model unloaded: loading it for this upscale"]
        data, width, height = job.run_job(connected, pattern(8).tobytes(), W, H, formats.U8, {"scale": 2.0})
        assert (width, height) == (2 * W, 2 * H) and len(data) == 2 * W * 2 * H * 4
        assert client.health()["model_loaded"]
    finally:
        server.stop()
