"""Idle engines: the model is unloaded after --unload-after and reloaded by the next job (same bytes); an engine
started on demand exits after its idle time and the next bridge call starts a new one. Real servers, real
`uprez serve` processes."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from server_helpers import FAST, raw_image, wait_for

from engine.errors import InvalidInput
from engine.server.idle import DEFAULT_EXIT_AFTER_S, DEFAULT_UNLOAD_AFTER_S, IdlePolicy, idle_policy
from plugin.uprez_client import Client, EngineError, EngineNotRunning, launcher
from plugin.uprez_client.idle import IDLE_UNLOADED, idle_note, is_stopping

ROOT = Path(__file__).resolve().parents[2]


# -- where the times come from ------------------------------------------------------------------------
def test_the_policy_comes_from_flags_then_environment_then_bridge_json(tmp_path):
    assert idle_policy(tmp_path, environ={}) == IdlePolicy(DEFAULT_UNLOAD_AFTER_S, None, False)
    (tmp_path / "bridge.json").write_text(json.dumps({"unload_after": 60, "exit_after": 600}))
    # A person's `uprez serve` never exits by itself, whatever bridge.json says; its unload time is read.
    assert idle_policy(tmp_path, environ={}) == IdlePolicy(60.0, None, False)
    on_demand = {"UPREZ_STARTED_BY": "bridge"}
    assert idle_policy(tmp_path, environ=on_demand) == IdlePolicy(60.0, 600.0, False)
    assert idle_policy(tmp_path, environ={**on_demand, "UPREZ_EXIT_AFTER": "90", "UPREZ_UNLOAD_AFTER": "30"}) \
        == IdlePolicy(30.0, 90.0, False)
    assert idle_policy(tmp_path, 5, 7, environ={**on_demand, "UPREZ_EXIT_AFTER": "90"}) == IdlePolicy(5.0, 7.0)
    assert idle_policy(tmp_path, 0, environ={"UPREZ_PARENT_WATCH": "stdin"}) == IdlePolicy(None, None, True)
    (tmp_path / "bridge.json").write_text("{}")
    assert idle_policy(tmp_path, environ=on_demand).exit_after == DEFAULT_EXIT_AFTER_S
    with pytest.raises(InvalidInput, match="UPREZ_UNLOAD_AFTER must be a number of seconds"):
        idle_policy(tmp_path, environ={"UPREZ_UNLOAD_AFTER": "soon"})


def test_uprez_serve_refuses_a_bad_unload_time_in_one_line(tmp_path):
    env = dict(os.environ, UPREZ_CONFIG_DIR=str(tmp_path))
    (tmp_path / "bridge.json").write_text(json.dumps({"unload_after": "a while"}))
    done = subprocess.run([sys.executable, "-m", "engine.cli", "serve", "--port", "0"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "unload_after in bridge.json must be a number of seconds" in done.stderr


# -- unload and reload ---------------------------------------------------------------------------------
def test_an_idle_engine_unloads_and_the_next_job_reloads_with_the_same_bytes(start_server, config_dir):
    server = start_server(idle=IdlePolicy(unload_after=1.0))
    client = Client(server.url)

    def run() -> bytes:
        job = client.submit_raw(raw_image(24, 24), 24, 24, "RGBA", 8, seed=5, **FAST)
        client.wait(job)
        return client.result(job)[0]

    first = run()
    health = client.health()
    assert health["model_loaded"] and not health["idle_unloaded"] and health["unload_after"] == 1.0
    # Health checks now and then do not keep the model loaded; the queue view learns of the unload too.
    unloaded = wait_for(lambda: client.health()["idle_unloaded"] and client.queue(), timeout=30, interval=0.2)
    assert unloaded["model_loaded"] is False and idle_note(unloaded) == IDLE_UNLOADED
    assert client.health()["model"] is None
    assert run() == first  # loaded again, the same bytes
    health = client.health()
    assert health["model_loaded"] and not health["idle_unloaded"]


def heavy_flux(tiny: Path, folder: Path) -> tuple[Path, int]:
    """The tiny FLUX folder with a much wider transformer (random weights, ~290 MB of float32), so that its
    unloading shows in the process's RSS; returns the folder and the transformer's bytes."""
    from diffusers import FluxTransformer2DModel

    shutil.copytree(tiny, folder)
    config = FluxTransformer2DModel.load_config(folder / "transformer")
    config.update(num_attention_heads=64, num_layers=2, num_single_layers=2)  # inner width 64 x 16 = 1024
    torch.manual_seed(0)
    model = FluxTransformer2DModel.from_config(config)
    shutil.rmtree(folder / "transformer")
    model.save_pretrained(folder / "transformer")
    return folder, sum(p.numel() * p.element_size() for p in model.parameters())


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads the RSS from /proc")
def test_an_idle_engines_rss_falls_back_and_the_next_job_gives_the_same_bytes(serve_process, tiny_flux, tmp_path):
    model, weight_bytes = heavy_flux(tiny_flux, tmp_path / "heavy-flux")
    weights_mb = weight_bytes / 2**20
    engine = serve_process("--model", str(model), "--unload-after", "5")
    client = Client(engine.url, (engine.config_dir / "token").read_text().strip())
    pid = engine.process.pid
    wait_for(lambda: client.queue()["model_loaded"], timeout=180, interval=0.1)
    started = rss_mb(pid)  # fresh, its default model loaded by the warm-up (safetensors maps it in lazily)

    def run() -> bytes:
        job = client.submit_raw(raw_image(48, 48), 48, 48, "RGBA", 8, seed=2, scale=2, strength=0.5, steps=4)
        client.wait(job)
        return client.result(job)[0]

    first = run()
    after_job = rss_mb(pid)
    wait_for(lambda: client.queue()["idle_unloaded"], timeout=60, interval=0.2)
    unloaded = rss_mb(pid)
    second = run()
    reloaded = rss_mb(pid)
    wait_for(lambda: client.queue()["idle_unloaded"], timeout=60, interval=0.2)
    unloaded_again = rss_mb(pid)
    print(f"\nRSS (MB), transformer weights {weights_mb:.0f}: at start-up {started:.0f}; after a job {after_job:.0f}; "
          f"idle, unloaded {unloaded:.0f}; after the next job (reloaded) {reloaded:.0f}; idle, unloaded "
          f"{unloaded_again:.0f}")
    assert second == first  # reloaded, the same bytes
    assert after_job - unloaded > 0.8 * weights_mb  # the model's memory went back to the system
    assert reloaded - unloaded > 0.8 * weights_mb
    # Back near the start-up figure (what stays is one-time: code and caches the first job brought in, ~80 MB
    # here), and not creeping up from one unload to the next.
    assert unloaded < started + 0.25 * weights_mb
    assert unloaded_again < unloaded + 0.05 * weights_mb


# -- idle exit of an engine started on demand ----------------------------------------------------------
def gone(pid: int) -> bool:
    """The process has ended (reaped here if it was our child; a zombie counts as ended)."""
    try:
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return True
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    status = Path(f"/proc/{pid}/status")
    return status.exists() and "\nState:\tZ" in status.read_text()


@pytest.fixture
def own_config(tmp_path, monkeypatch):
    folder = tmp_path / "config"
    folder.mkdir()
    monkeypatch.setenv("UPREZ_CONFIG_DIR", str(folder))
    monkeypatch.delenv("UPREZ_URL", raising=False)
    monkeypatch.delenv("UPREZ_TOKEN", raising=False)
    return folder


def test_an_engine_started_on_demand_exits_when_idle_and_the_next_call_starts_another(own_config):
    command = [sys.executable, "-m", "engine.cli", "serve", "--port", "0"]
    (own_config / "bridge.json").write_text(json.dumps({"start_command": command, "exit_after": 4,
                                                        "unload_after": 1}))
    pids = []
    try:
        client = launcher.connect(Client("http://127.0.0.1:9"))
        pids.append(json.loads((own_config / "engine.json").read_text())["pid"])
        health = client.health()
        assert health["exit_after"] == 4.0 and health["unload_after"] == 1.0
        job = client.submit_raw(raw_image(16, 16), 16, 16, "RGBA", 8)
        client.wait(job)
        client.result(job)
        # A queue view polling it does not keep it alive; it leaves after its idle time and removes engine.json.
        began = time.monotonic()
        while not gone(pids[0]) and time.monotonic() - began < 60:
            with contextlib.suppress(EngineNotRunning, EngineError):
                client.queue()
            time.sleep(0.5)
        assert gone(pids[0]), "the on-demand engine did not exit after its idle time"
        assert not (own_config / "engine.json").exists()

        again = launcher.connect(Client())  # the next bridge call: nothing answers, so it starts a new engine
        pids.append(json.loads((own_config / "engine.json").read_text())["pid"])
        assert pids[1] != pids[0]
        job = again.submit_raw(raw_image(16, 16), 16, 16, "RGBA", 8)
        assert again.wait(job)["state"] == "done"
    finally:
        for pid in pids:
            if not gone(pid):
                os.kill(pid, signal.SIGTERM)


def test_a_stopping_engine_answers_503_and_connect_starts_the_next(own_config, start_server):
    """The engine decided to stop (idle) just as a bridge was about to use it: the bridge is told 503, never a
    working answer, and launcher.connect waits for it to go, then starts a new engine."""
    server = start_server(idle=IdlePolicy(unload_after=None, exit_after=1.0))
    server.app.state.idle.exit = None  # only marked stopping, for now
    client = Client(server.url)
    wait_for(lambda: server.app.state.idle.stopping, timeout=30, interval=0.1)
    with pytest.raises(EngineError) as raised:
        client.health()
    assert is_stopping(raised.value) and "stopping" in raised.value.message
    with pytest.raises(EngineError, match="stopping"):
        client.submit_raw(raw_image(16, 16), 16, 16, "RGBA", 8)

    command = [sys.executable, "-m", "engine.cli", "serve", "--port", "0"]
    (own_config / "bridge.json").write_text(json.dumps({"start_command": command}))
    threading.Timer(1.0, setattr, (server.server, "should_exit", True)).start()  # it goes a second later
    fresh = launcher.connect(Client(server.url))
    try:
        assert fresh.url != server.url and fresh.health()["status"] == "ok"
        assert server.thread.join(10) is None and not server.thread.is_alive()
    finally:
        os.kill(json.loads((own_config / "engine.json").read_text())["pid"], signal.SIGTERM)
