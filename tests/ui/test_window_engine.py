"""The window starts its own engine when none answers (and stops only that one), and remembers its settings."""

from __future__ import annotations

import json
import socket
import subprocess
import sys

import pytest
from PyQt6.QtCore import QTimer
from PyQt6.QtWidgets import QApplication

from plugin.uprez_client.options import PRESET_HINTS
from ui.engine_link import EngineLink
from ui.main_window import MainWindow
from ui.settings_store import SETTINGS_FILE, DesktopSettings, load_settings


def dead_url() -> str:
    """A loopback URL nothing listens on (a port just freed), so discovery finds no engine."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.fixture
def lonely(monkeypatch, tmp_path):
    """No engine anywhere: a fresh config folder (no token, no engine.json) and a URL that does not answer."""
    folder = tmp_path / "config"
    monkeypatch.setenv("UPREZ_CONFIG_DIR", str(folder))
    monkeypatch.setenv("UPREZ_URL", dead_url())
    return folder


def test_starts_its_own_engine_and_stops_it_on_close(qtbot, lonely, write_photo, tmp_path, monkeypatch):
    window = MainWindow(settings=DesktopSettings())
    qtbot.addWidget(window)
    window.show()
    statuses: list[str] = []
    window.link.status.connect(statuses.append)
    window.connect_engine()
    qtbot.waitUntil(lambda: window.client is not None, timeout=90000)
    assert "starting engine…" in statuses
    process = window.link.started.process
    assert process.poll() is None
    published = json.loads((lonely / "engine.json").read_text())
    assert published["pid"] == process.pid and window.client.url == published["url"]
    assert "started by this window" in window.engine_label.text()
    assert window.panel.model.findData("builtin") > 0

    # It is a working engine: a job runs through it.
    source = tmp_path / "photo.png"
    write_photo(source, 40, 30)
    window.open_file(source)
    with qtbot.waitSignal(window.runner.finished, timeout=60000):
        window.run()
    window.ask = lambda _question: True  # close without saving the result
    window.close()
    assert process.wait(15) is not None
    assert not (lonely / "engine.json").exists()


def test_an_engine_that_cannot_start_is_explained(qtbot, lonely):
    command = [sys.executable, "-c", "import sys; print('no model here'); sys.exit(3)"]
    window = MainWindow(link=EngineLink(command=command), settings=DesktopSettings())
    window.link.setParent(window)
    qtbot.addWidget(window)
    with qtbot.waitSignal(window.link.failed, timeout=30000):
        window.connect_engine()
    text = window.banner.text()
    assert "exited (code 3)" in text and "no model here" in text and "uprez serve" in text
    assert window.banner.retry_button.isVisibleTo(window.banner)
    assert not window.run_button.isEnabled() and "not connected" in window.engine_label.text()
    window.close()


def test_an_engine_it_did_not_start_is_left_running(qtbot, make_window, engine_client):
    window = make_window()
    assert window.link.started is None
    window.close()
    assert engine_client.health()["status"] == "ok"


def test_settings_are_remembered(qtbot, make_window, config_dir):
    window = make_window(connect=False)
    panel = window.panel
    panel.scale.setCurrentText("3×")
    panel.preset.setCurrentIndex(panel.preset.findData("creative"))
    before = panel.seed.value()
    panel.dice.click()
    assert panel.seed.value() != before
    panel.prompt.setText("a harbour at dusk")
    panel.advanced_button.setChecked(True)
    panel.steps.setValue(12)
    window.feather.setValue(5)
    window.close()
    assert (config_dir / SETTINGS_FILE).is_file()  # UPREZ_CONFIG_DIR, never the real home

    saved = load_settings()
    assert (saved.scale, saved.preset, saved.prompt, saved.steps, saved.feather) == (
        3.0, "creative", "a harbour at dusk", 12, 5)
    again = MainWindow()
    qtbot.addWidget(again)
    assert again.panel.scale.currentText() == "3×" and again.panel.preset.currentData() == "creative"
    assert again.panel.seed.value() == saved.seed and again.panel.advanced_button.isChecked()
    assert again.panel.strength.text() == "model's default" and again.feather.value() == 5
    assert again.panel.preset.toolTip() == PRESET_HINTS["creative"]
    again.close()


def test_uprez_gui_opens_the_image_and_returns_on_close(qtbot, engine, monkeypatch, write_photo, tmp_path):
    from ui.app import main

    monkeypatch.setenv("UPREZ_URL", engine.url)
    source = tmp_path / "photo.png"
    write_photo(source, 40, 30)
    seen = {}

    def close_when_connected() -> None:
        window = next(w for w in QApplication.topLevelWidgets() if isinstance(w, MainWindow) and w.isVisible())
        if window.client is None:
            QTimer.singleShot(50, close_when_connected)
            return
        seen.update(title=window.windowTitle(), size=(window.picture.width, window.picture.height))
        window.close()

    QTimer.singleShot(50, close_when_connected)
    assert main([str(source)]) == 0
    assert seen == {"title": "photo — Uprez", "size": (40, 30)}


def test_uprez_gui_without_pyqt6_says_how_to_install() -> None:
    code = "import sys; sys.modules['PyQt6'] = None; from engine.cli import main; sys.exit(main(['gui']))"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 1
    assert "pip install 'uprez[gui]'" in run.stderr


def test_an_idle_engine_shows_as_idle_and_upscale_starts_it_again(qtbot, lonely, write_photo, tmp_path,
                                                                   monkeypatch):
    """The window's own engine unloads its model, then exits after idling: the label says so (no error banner),
    and the next Upscale starts a new engine and runs."""
    from plugin.uprez_client.idle import IDLE_STOPPED, IDLE_UNLOADED

    monkeypatch.setenv("UPREZ_UNLOAD_AFTER", "1")
    monkeypatch.setenv("UPREZ_EXIT_AFTER", "5")
    window = MainWindow(settings=DesktopSettings())
    qtbot.addWidget(window)
    window.show()
    window.connect_engine()
    qtbot.waitUntil(lambda: window.client is not None, timeout=90000)
    first = window.link.started.process
    qtbot.waitUntil(lambda: IDLE_UNLOADED in window.engine_label.text(), timeout=30000)
    assert window.banner.kind != "error"
    qtbot.waitUntil(lambda: IDLE_STOPPED in window.engine_label.text(), timeout=60000)
    assert first.wait(10) == 0 and not (lonely / "engine.json").exists()
    assert window.banner.kind != "error" and window.client is None

    source = tmp_path / "photo.png"
    write_photo(source, 40, 30)
    window.open_file(source)
    assert window.run_button.isEnabled()
    with qtbot.waitSignal(window.runner.finished, timeout=90000):
        window.run()
    second = window.link.started.process
    assert second.pid != first.pid and second.poll() is None
    window.ask = lambda _question: True
    window.close()
    assert second.wait(15) is not None
