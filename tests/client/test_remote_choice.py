"""The front ends' remote-engine choice (uprez_client.remote_choice): stored as a 0600 file, checked against a real
engine over TLS on loopback with a self-made certificate, one sentence for each way it can fail, and a remote
choice that wins over engine.json and never starts a local engine."""

from __future__ import annotations

import json
import os
import socket
import stat
import sys
import threading
from pathlib import Path

import pytest
from tls_engine import start_tls_engine

from engine.server import ServerConfig, start_in_thread
from plugin.uprez_client import EngineNotRunning, remote_choice
from plugin.uprez_client.connection import Connection, parse

FP = "ab" * 32


@pytest.fixture
def config(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "config"
    monkeypatch.setenv("UPREZ_CONFIG_DIR", str(folder))
    monkeypatch.delenv("UPREZ_URL", raising=False)
    monkeypatch.delenv("UPREZ_TOKEN", raising=False)
    return folder


@pytest.fixture(scope="module")
def tls_engine(tmp_path_factory):
    engine = start_tls_engine(tmp_path_factory.mktemp("tls-engine"))
    yield engine
    engine.stop()


@pytest.fixture(scope="module")
def plain_engine(tmp_path_factory):
    """A local engine as today: plain HTTP on loopback, the built-in model (quick to start)."""
    server = start_in_thread(ServerConfig(host="127.0.0.1", port=0, model="builtin", device="cpu",
                                          config_dir=tmp_path_factory.mktemp("plain-engine")))
    yield server
    server.stop()


def test_the_choice_is_a_0600_file_per_front_end_and_forgetting_it_means_the_local_engine(config):
    assert remote_choice.load("krita") is None and remote_choice.label(None) == "local"
    connection = Connection("https://gpu-box.studio:8743", "tok/en+1", FP)
    path = Path(remote_choice.save("krita", connection))
    assert path.parent == config and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(config.stat().st_mode) == 0o700
    assert remote_choice.load("krita") == connection
    assert remote_choice.label(connection) == "remote: gpu-box.studio:8743"
    assert remote_choice.label(Connection("https://gpu-box.studio", "t", FP)) == "remote: gpu-box.studio"
    assert remote_choice.load("gimp") is None and remote_choice.load("window") is None  # each front end its own
    assert [p.name for p in config.iterdir()] == ["remote-krita"]  # no temporary file left behind
    remote_choice.forget("krita")
    remote_choice.forget("krita")  # twice is fine
    assert remote_choice.load("krita") is None
    path.write_text("not a connection string")
    assert remote_choice.load("krita") is None  # a damaged file: the local engine, not a crash
    with pytest.raises(ValueError, match="app must be one of"):
        remote_choice.choice_path("photoshop")


@pytest.mark.parametrize(("text", "words"), [
    ("https://host:8743", "starts with uprez://"),
    ("uprez://host:8743/?sha256=" + FP, "has no token"),
    ("uprez://tok@host:8743/", "no certificate fingerprint"),
    ("uprez://tok@host:8743/?sha256=12ab", "64 hexadecimal digits"),
])
def test_a_malformed_string_gets_the_parsers_sentence_and_no_network_call(config, text, words):
    with pytest.raises(remote_choice.RemoteProblem, match=words) as caught:
        remote_choice.check(text)
    assert str(caught.value).endswith(".") and "\n" not in str(caught.value)


def test_a_good_string_is_checked_over_the_pinned_tls_connection(config, tls_engine):
    connection, health = remote_choice.check("  " + tls_engine.connection_string() + "\n")  # as pasted
    assert connection == Connection(tls_engine.url, tls_engine.token, tls_engine.fingerprint)
    assert health["version"] and health["device"] == "cpu"


def test_a_wrong_fingerprint_is_refused_before_the_token_is_sent(config, tls_engine):
    with pytest.raises(remote_choice.RemoteProblem) as caught:
        remote_choice.check(tls_engine.connection_string(fingerprint="cd" * 32))
    message = str(caught.value)
    assert "someone may be in between, or the engine made a new certificate; ask for a new connection string" \
        in message, message


def test_an_unknown_or_revoked_token_is_named(config, tls_engine):
    with pytest.raises(remote_choice.RemoteProblem, match="does not accept this token .it was revoked"):
        remote_choice.check(tls_engine.revoked_string())


def test_an_unreachable_host_and_a_silent_one_are_told_apart(config):
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there now
    with pytest.raises(remote_choice.RemoteProblem, match=rf"Cannot reach an engine at 127.0.0.1:{port} "):
        remote_choice.check(f"uprez://tok@127.0.0.1:{port}/?sha256={FP}")
    silent = socket.socket()  # accepts the TCP connection, never says a word of TLS
    silent.bind(("127.0.0.1", 0))
    silent.listen(4)
    try:
        port = silent.getsockname()[1]
        with pytest.raises(remote_choice.RemoteProblem, match="did not answer within 1 s"):
            remote_choice.check(f"uprez://tok@127.0.0.1:{port}/?sha256={FP}", timeout=1.0)
    finally:
        silent.close()
    with pytest.raises(remote_choice.RemoteProblem, match="host name no-such-host.invalid could not be found"):
        remote_choice.check(f"uprez://tok@no-such-host.invalid:8743/?sha256={FP}")


def test_a_plain_http_engine_is_not_taken_for_a_remote_one(config, plain_engine):
    port = int(plain_engine.url.rsplit(":", 1)[1])
    with pytest.raises(remote_choice.RemoteProblem, match="must run with `uprez serve --remote`"):
        remote_choice.check(f"uprez://tok@127.0.0.1:{port}/?sha256={FP}")


def test_the_remote_choice_wins_over_engine_json_and_never_starts_a_local_engine(config, tmp_path, plain_engine):
    # A live local engine published in engine.json, and a bridge.json that would start another one.
    config.mkdir(parents=True, exist_ok=True)
    (config / "engine.json").write_text(json.dumps({"url": plain_engine.url, "pid": os.getpid()}))
    marker = tmp_path / "started"
    (config / "bridge.json").write_text(json.dumps({"start_command": [
        sys.executable, "-c", f"open({str(marker)!r}, 'w').close()"]}))
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    remote_choice.save("gimp", parse(f"uprez://tok@127.0.0.1:{port}/?sha256={FP}"))
    client = remote_choice.client_for("gimp")
    assert remote_choice.is_remote(client) and client.url == f"https://127.0.0.1:{port}"
    with pytest.raises(EngineNotRunning, match=f"127.0.0.1:{port}"):
        remote_choice.connect("gimp")
    threading.Event().wait(0.5)
    assert not marker.exists(), "a local engine was started while a remote one was chosen"
    # Krita has no remote choice: it finds the local engine engine.json names, as before.
    local = remote_choice.connect("krita")
    assert not remote_choice.is_remote(local) and local.url == plain_engine.url


def test_a_job_runs_on_the_remote_engine_through_the_stored_choice(config, tls_engine, sample_png):
    connection, _ = remote_choice.check(tls_engine.connection_string())
    remote_choice.save("window", connection)
    client = remote_choice.connect("window")
    job = client.start(str(sample_png), scale=2.0, model="builtin")
    job.wait()
    data, meta = job.result()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and (meta["width"], meta["height"]) == (128, 150)
