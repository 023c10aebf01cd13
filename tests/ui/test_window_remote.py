"""Engine > Connect to a remote engine…: the window against a real engine behind TLS on loopback (a self-made
certificate), in real Qt offscreen. UPREZ_UI_SCREENSHOTS=docs writes the dialog's pictures there."""

from __future__ import annotations

import os
import socket
import stat
from pathlib import Path

import pytest
from tls_engine import start_tls_engine

from plugin.uprez_client import remote_choice
from plugin.uprez_client.connection import parse
from ui.engine_link import EngineLink
from ui.main_window import MainWindow
from ui.settings_store import DesktopSettings

SHOTS = os.environ.get("UPREZ_UI_SCREENSHOTS", "")


@pytest.fixture(scope="module")
def tls_engine(tmp_path_factory):
    engine = start_tls_engine(tmp_path_factory.mktemp("tls-engine"))
    yield engine
    engine.stop()


@pytest.fixture
def lonely(monkeypatch, tmp_path) -> Path:
    """No local engine: a fresh config folder and a loopback URL nothing listens on."""
    folder = tmp_path / "config"
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("UPREZ_CONFIG_DIR", str(folder))
    monkeypatch.setenv("UPREZ_URL", f"http://127.0.0.1:{port}")
    return folder


def shoot(widget, name: str) -> None:
    if SHOTS:
        widget.grab().save(str(Path(SHOTS) / name))


def connect_with(qtbot, window: MainWindow, text: str):
    dialog = window.connect_remote()
    dialog.field.setText(text)
    dialog.connect_button.click()
    qtbot.waitUntil(lambda: dialog.connect_button.isEnabled() or not dialog.isVisible(), timeout=20000)
    return dialog


def test_the_window_connects_to_a_remote_engine_runs_a_job_there_and_switches_back(
        qtbot, lonely, tls_engine, write_photo, tmp_path):
    # auto_start on, as people run it: with a remote engine chosen it must still never start a local one.
    window = MainWindow(link=EngineLink(auto_start=True), settings=DesktopSettings())
    window.ask = lambda _question: True
    qtbot.addWidget(window)
    window.resize(1000, 700)
    window.show()
    assert not window.local_action.isEnabled()

    # Each failure is one sentence in the dialog; nothing is stored, the pasted text stays to fix.
    dialog = connect_with(qtbot, window, tls_engine.connection_string(fingerprint="cd" * 32))
    assert dialog.isVisible() and "someone may be in between, or the engine made a new certificate; ask for a new " \
        "connection string" in dialog.status.text()
    shoot(dialog, "desktop-remote-refused.png")
    dialog.field.setText(tls_engine.revoked_string())
    dialog.connect_button.click()
    qtbot.waitUntil(lambda: "revoked" in dialog.status.text(), timeout=20000)
    dialog.field.setText("https://127.0.0.1:1")
    dialog.connect_button.click()
    qtbot.waitUntil(lambda: "starts with uprez://" in dialog.status.text(), timeout=20000)
    assert dialog.field.text() == "https://127.0.0.1:1" and remote_choice.load("window") is None
    dialog.reject()

    # A good string: checked, stored 0600, the window reconnects and says where.
    dialog = connect_with(qtbot, window, tls_engine.connection_string())
    assert dialog.result() == dialog.DialogCode.Accepted
    stored = lonely / "remote-window"
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600
    qtbot.waitUntil(lambda: window.client is not None, timeout=20000)
    port = tls_engine.url.rsplit(":", 1)[1]
    assert window.engine_label.text().startswith(f"Engine: remote: 127.0.0.1:{port} · cpu"), \
        window.engine_label.text()
    assert remote_choice.is_remote(window.client) and window.link.started is None
    assert window.local_action.isEnabled()

    # A job runs on the remote engine.
    source = tmp_path / "photo.png"
    write_photo(source, 40, 30)
    window.open_file(source)
    with qtbot.waitSignal(window.runner.finished, timeout=90000):
        window.run()
    assert (window.result.width, window.result.height) == (80, 60)
    # No local engine exists here (UPREZ_URL answers nothing) and none was started: the remote engine made it.
    assert window.link.started is None and remote_choice.is_remote(window.client)
    shoot(window, "desktop-remote.png")

    # Back to the local engine: the choice is gone; none answers here and starting one is left to the link,
    # so this test turns auto-start off to stay quick.
    window.link.auto_start = False
    window.use_local_engine()
    assert not stored.exists() and not window.local_action.isEnabled()
    qtbot.waitUntil(lambda: not window.link.busy, timeout=20000)
    assert window.client is None and window.engine_label.text() == "Engine: not connected"
    window.close()
    assert tls_engine.token not in (lonely / "desktop.json").read_text()  # the token lives only in remote-window


def test_a_remote_engine_that_went_away_is_reported_and_no_local_one_is_started(qtbot, lonely, tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    remote_choice.save("window", parse(f"uprez://tok@127.0.0.1:{port}/?sha256={'ab' * 32}"))
    window = MainWindow(link=EngineLink(auto_start=True), settings=DesktopSettings())
    window.ask = lambda _question: True
    qtbot.addWidget(window)
    window.show()
    window.connect_engine()
    qtbot.waitUntil(lambda: not window.link.busy, timeout=20000)
    assert window.link.started is None, "a local engine was started while a remote one was chosen"
    assert window.engine_label.text() == f"Engine: remote: 127.0.0.1:{port} · not connected"
    assert f"127.0.0.1:{port}" in window.banner.text()
    window.close()
