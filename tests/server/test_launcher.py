"""Bridges start the engine themselves when bridge.json says how: a real `uprez serve` process here."""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "plugin"))

from uprez_client import Client, EngineNotRunning, launcher  # noqa: E402


@pytest.fixture
def own_config(tmp_path, monkeypatch):
    folder = tmp_path / "config"
    folder.mkdir()
    monkeypatch.setenv("UPREZ_CONFIG_DIR", str(folder))
    monkeypatch.delenv("UPREZ_URL", raising=False)
    monkeypatch.delenv("UPREZ_TOKEN", raising=False)
    return folder


def test_without_bridge_json_the_message_says_how_to_start_it(own_config):
    nowhere = Client("http://127.0.0.1:9")
    with pytest.raises(EngineNotRunning, match="uprez serve"):
        launcher.start_engine(nowhere, timeout=1)


def test_a_command_that_exits_gets_a_message_naming_it(own_config):
    command = [sys.executable, "-c", "raise SystemExit(3)"]
    (own_config / "bridge.json").write_text(json.dumps({"start_command": command}))
    with pytest.raises(EngineNotRunning, match="exited with code 3"):
        launcher.start_engine(Client("http://127.0.0.1:9"), timeout=30)


def test_the_configured_engine_is_started_and_found_on_its_own_port(own_config):
    command = [sys.executable, "-m", "engine.cli", "serve", "--port", "0", "--model", "builtin"]
    (own_config / "bridge.json").write_text(json.dumps({"start_command": command}))
    client = launcher.start_engine(Client("http://127.0.0.1:9"), timeout=120)
    try:
        assert client.url != "http://127.0.0.1:9"
        assert client.health()["model"] is not None
        assert client.token  # the first start wrote the token, and the new client read it
        client.jobs()  # the token is accepted
    finally:
        pid = json.loads((own_config / "engine.json").read_text())["pid"]
        os.kill(pid, signal.SIGTERM)


def test_a_first_start_on_the_expected_port_gives_a_client_with_the_new_token(own_config):
    """The bridge made its client before the engine existed (no token file yet); the engine comes up on the
    very port that client uses, so its health check passes without a token: the client handed back must
    have read the token the first start wrote."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "engine.cli", "serve", "--port", str(port), "--model", "builtin"]
    (own_config / "bridge.json").write_text(json.dumps({"url": url, "start_command": command}))
    before = Client()
    assert before.url == url and before.token is None  # found through bridge.json; no token yet
    client = launcher.start_engine(before, timeout=120)
    try:
        assert client.url == url and client.token
        client.jobs()  # would be Unauthorized with the tokenless client
    finally:
        pid = json.loads((own_config / "engine.json").read_text())["pid"]
        os.kill(pid, signal.SIGTERM)
