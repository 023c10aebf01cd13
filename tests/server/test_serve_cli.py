"""`uprez serve` as a user starts it: a subprocess that publishes its URL and stops cleanly on Ctrl-C or SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from plugin.uprez_client import Client, engine_url


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_serve_publishes_its_url_answers_and_stops_cleanly(tiny_model, tmp_path, stop):
    env = {**os.environ, "UPREZ_CONFIG_DIR": str(tmp_path)}
    env.pop("UPREZ_URL", None)
    process = subprocess.Popen([sys.executable, "-m", "engine.cli", "serve", "--port", "0", "--device", "cpu",
                                "--model", str(tiny_model("flux-dev"))], env=env, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (tmp_path / "engine.json").exists():
            assert process.poll() is None and time.monotonic() < deadline, process.stderr.read()
            time.sleep(0.1)
        info = json.loads((tmp_path / "engine.json").read_text())
        assert info["pid"] == process.pid and engine_url(env) == info["url"]
        client = Client(engine_url(env), token=(tmp_path / "token").read_text().strip())
        assert client.health()["status"] == "ok" and client.jobs() == []
    finally:
        process.send_signal(stop)
        _, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr
    assert "uprez engine http://127.0.0.1:" in stderr
    assert not (tmp_path / "engine.json").exists()


def test_serve_refuses_a_missing_model_at_start(tmp_path):
    env = {**os.environ, "UPREZ_CONFIG_DIR": str(tmp_path)}
    done = subprocess.run([sys.executable, "-m", "engine.cli", "serve", "--port", "0", "--model", "/no/such/model"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "/no/such/model" in done.stderr and "Traceback" not in done.stderr
