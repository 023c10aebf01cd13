"""What must not go wrong: a result saved under another image's name, a job or engine left behind (or stopped
under another app), an exception that ends the app, a slow canvas on a large image."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PyQt6.QtCore import QEvent, QMimeData, QObject, QPointF, QRect, Qt, QTimer, QUrl
from PyQt6.QtGui import QDropEvent, QImage, QMouseEvent
from PyQt6.QtWidgets import QApplication

import ui.main_window
from plugin.uprez_client import Client
from ui.engine_link import EngineLink, EngineProcess, EngineStartFailed
from ui.imageio import Picture
from ui.jobs import JobRunner
from ui.main_window import BUSY_TEXT
from ui.region import RegionMask
from ui.settings_store import DesktopSettings

# A job that runs for seconds on the tiny FLUX model (as in test_window_jobs): there is time to act mid-run.
SLOW = {"steps": 200, "strength": 1.0, "scale": 4}
SLEEPER = [sys.executable, "-c", "import time; time.sleep(120)"]


def slow_settings(tiny_flux: Path) -> DesktopSettings:
    return DesktopSettings(model=str(tiny_flux), scale=4.0, steps=SLOW["steps"], strength=SLOW["strength"])


def wait_state(client: Client, job_id: str, states: tuple[str, ...], qtbot, timeout: int = 20000) -> None:
    qtbot.waitUntil(lambda: client.job(job_id)["state"] in states, timeout=timeout)


def drop(window, mime: QMimeData) -> None:
    window.dropEvent(QDropEvent(QPointF(10, 10), Qt.DropAction.CopyAction, mime, Qt.MouseButton.NoButton,
                                Qt.KeyboardModifier.NoModifier))


def file_mime(path: Path) -> QMimeData:
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(path))])
    return mime


# -- the result belongs to the picture it was made from -------------------------------------------------------
def test_nothing_can_be_opened_while_a_job_runs(qtbot, make_window, write_photo, tmp_path, tiny_flux):
    first, second = tmp_path / "first.png", tmp_path / "second.png"
    write_photo(first, 96, 72)
    write_photo(second, 40, 30)
    window = make_window(slow_settings(tiny_flux))
    assert window.open_file(first)
    window.run()
    try:
        assert window.runner.running
        assert not window.open_action.isEnabled() and not window.paste_action.isEnabled()
        assert not window.open_file(second)
        image = QImage(20, 10, QImage.Format.Format_RGB32)
        image.fill(0xFF102030)
        QApplication.clipboard().setImage(image)
        assert not window.paste()
        drop(window, file_mime(second))
        assert window.picture.name == "first" and window.status_label.text() == BUSY_TEXT
    finally:
        with qtbot.waitSignal(window.runner.cancelled, timeout=20000):
            window.cancel()
    assert window.open_action.isEnabled() and window.paste_action.isEnabled()
    assert window.open_file(second) and window.picture.name == "second"


def test_the_result_keeps_its_source_and_goes_with_it(qtbot, make_window, write_photo, tmp_path, monkeypatch):
    first, second = tmp_path / "first.png", tmp_path / "second.png"
    write_photo(first, 40, 30)
    write_photo(second, 36, 20)
    window = make_window()
    window.settings.last_folder = str(tmp_path)
    assert window.open_file(first)
    with qtbot.waitSignal(window.runner.finished, timeout=60000):
        window.run()
    assert window.result_source.path == first and window.result_source.scale == 2.0

    # The save dialog suggests a name from the result's own source and scale, whatever the settings say now.
    # (A modal file dialog cannot be answered in a test: it is replaced by one that records its suggestion.)
    suggested = []
    monkeypatch.setattr(ui.main_window.QFileDialog, "getSaveFileName",
                        lambda _parent, _title, start, *_args, **_kw: (suggested.append(start), ("", ""))[1])
    window.settings.scale = 3.0
    window.save_dialog()
    assert Path(suggested[-1]).name == "first-2x.png"

    # Opening another picture asks before it discards an unsaved result; "no" keeps everything as it was.
    window.ask.reply = False
    assert not window.open_file(second)
    assert "not saved" in window.ask.asked[-1] and window.picture.name == "first" and window.result is not None
    window.ask.reply = True
    assert window.open_file(second)
    assert window.picture.name == "second" and window.result is None and window.result_source is None
    assert not window.save_action.isEnabled() and not window.copy_action.isEnabled()
    assert window.compare.split_pane.after is None  # the compare view shows the new picture alone

    # A saved result goes without a question.
    with qtbot.waitSignal(window.runner.finished, timeout=60000):
        window.run()
    assert window.save_result_to(tmp_path / "second-2x.png")
    asked = len(window.ask.asked)
    assert window.open_file(first) and len(window.ask.asked) == asked and window.result is None


def test_a_failing_save_or_drop_is_explained_not_fatal(qtbot, make_window, write_photo, tmp_path, monkeypatch):
    source = tmp_path / "photo.png"
    write_photo(source, 40, 30)
    window = make_window()
    window.open_file(source)
    with qtbot.waitSignal(window.runner.finished, timeout=60000):
        window.run()

    # A library's own exception type from a writer (a fake: no real file provokes one reliably).
    def broken_writer(*_args, **_kw):
        raise RuntimeError("encoder exploded")

    monkeypatch.setattr(ui.main_window, "save_file", broken_writer)
    assert not window.save_result_to(tmp_path / "out.png")
    assert "encoder exploded" in window.banner.text() and "result is still here" in window.banner.text()
    assert window.result is not None and not window.result_saved

    mime = QMimeData()
    mime.setImageData(QImage())  # an "image" that is not one
    drop(window, mime)
    assert "no image" in window.banner.text() and window.picture.name == "photo"


def test_uncaught_exceptions_reach_the_banner_not_the_end(qtbot, make_window, capsys):
    from ui.app import install_error_hook

    window = make_window(connect=False)
    previous = install_error_hook(window)
    try:
        def buggy_slot() -> None:
            raise KeyError("a bug in a slot")

        QTimer.singleShot(0, buggy_slot)  # under PyQt6's default hook this would abort the process
        qtbot.waitUntil(lambda: "a bug in a slot" in window.banner.text(), timeout=5000)
    finally:
        sys.excepthook = previous
    assert "KeyError" in window.banner.text() and window.banner.kind == "error"
    assert "Traceback" in capsys.readouterr().err


# -- closing leaves nothing running that should stop, and stops nothing that should run ---------------------
class GatedClient(Client):
    """The real client, with its upload's answer held back until the test says so (to close mid-upload)."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.job_ids: list[str] = []
        self.gate = threading.Event()

    def submit_raw(self, *args, **kwargs) -> str:
        job_id = super().submit_raw(*args, **kwargs)
        self.job_ids.append(job_id)
        self.gate.wait(20)
        return job_id


def slow_picture() -> Picture:
    return Picture(np.random.default_rng(1).integers(0, 255, (72, 96, 3), dtype=np.uint8), "slow")


def test_closing_during_the_upload_cancels_the_job(qtbot, engine, engine_client, tiny_flux):
    runner = JobRunner()
    client = GatedClient(engine.url)
    runner.start(client, slow_picture(), None, {"model": str(tiny_flux), **SLOW})
    qtbot.waitUntil(lambda: bool(client.job_ids), timeout=15000)  # the engine has the job; its id is on its way back
    runner.shutdown()  # the window closes now: no job id yet, no event stream to hang up
    client.gate.set()
    wait_state(engine_client, client.job_ids[0], ("cancelled",), qtbot)
    assert not runner.running and runner.job.final is None  # left, not followed to its end


def test_closing_before_the_job_id_reaches_the_window_cancels_the_job(qtbot, engine, engine_client, tiny_flux):
    runner = JobRunner()
    client = GatedClient(engine.url)
    client.gate.set()
    runner.start(client, slow_picture(), None, {"model": str(tiny_flux), **SLOW})
    deadline = time.monotonic() + 15
    while not runner.own_job_ids() and time.monotonic() < deadline:
        time.sleep(0.01)  # no Qt events processed: the id is known to the upload thread only
    assert runner.own_job_ids() == set(client.job_ids)
    runner.shutdown()
    wait_state(engine_client, client.job_ids[0], ("cancelled",), qtbot)
    assert not runner.running and runner.job.final is None  # cancelled directly, not followed to its end


def sleeper_engine(url: str) -> EngineProcess:
    """Stands in for the engine process the window started (a real one takes seconds to start; the engine
    it reports about is the real test engine at `url`)."""
    process = EngineProcess(SLEEPER)
    process.process = subprocess.Popen(SLEEPER)
    process.url = url
    return process


def test_an_engine_other_apps_use_is_left_running(qtbot, make_window, engine, engine_client, tiny_flux,
                                                  write_photo, tmp_path, capsys):
    pixels = np.random.default_rng(0).integers(0, 255, (72, 96, 4), dtype=np.uint8)
    krita_job = engine_client.submit_raw(pixels.tobytes(), 96, 72, "BGRA", 8, model=str(tiny_flux),
                                         client="Krita", **SLOW)
    source = tmp_path / "photo.png"
    write_photo(source, 40, 30)
    window = make_window(slow_settings(tiny_flux))
    ours = sleeper_engine(engine.url)
    window.link.started = ours
    other = make_window(slow_settings(tiny_flux))
    only_ours = sleeper_engine(engine.url)
    other.link.started = only_ours
    try:
        wait_state(engine_client, krita_job, ("running",), qtbot)
        window.open_file(source)
        with qtbot.waitSignal(window.runner.submitted, timeout=15000):
            window.run()
        window.close()
        assert ours.process.poll() is None, "the engine was stopped under Krita's job"
        err = capsys.readouterr().err
        assert "left running" in err and "1 from Krita" in err and "stops by itself when they are done" in err
        wait_state(engine_client, window.runner.job_id, ("cancelled",), qtbot)  # the window's own job stopped

        # Jobs of this window never keep the engine: with the Krita job gone, the other window stops it.
        engine_client.cancel(krita_job)
        wait_state(engine_client, krita_job, ("cancelled",), qtbot)
        other.close()
        assert only_ours.process.poll() is not None
    finally:
        for process in (ours.process, only_ours.process):
            process.kill()
            process.wait(10)
        engine_client.cancel(krita_job)


def test_a_window_closed_before_its_engine_starts_never_starts_it(qtbot, monkeypatch, tmp_path):
    process = EngineProcess(SLEEPER)
    process.stop()  # closed while the worker thread is between `started = process` and Popen
    with pytest.raises(EngineStartFailed, match="closed"):
        process.start(timeout=1)
    assert process.process is None and process._log.closed

    monkeypatch.setenv("UPREZ_CONFIG_DIR", str(tmp_path))
    with socket.socket() as sock:  # a port just freed: nothing answers there, so the link would start one
        sock.bind(("127.0.0.1", 0))
        monkeypatch.setenv("UPREZ_URL", f"http://127.0.0.1:{sock.getsockname()[1]}")
    link = EngineLink(command=SLEEPER)
    link.shutdown()  # closed before the worker thread got as far as creating the process
    with qtbot.waitSignal(link.failed, timeout=15000) as failed:
        link.connect_engine()
    assert "closed" in str(failed.args[0]) and link.started is None


def test_stop_closes_the_engine_log(qtbot):
    process = EngineProcess(SLEEPER)
    process.process = subprocess.Popen(SLEEPER, stdout=process._log)
    process.stop()
    assert process.process.poll() is not None and process._log.closed and process.output_tail() == ""


# -- a large picture stays quick to work on ---------------------------------------------------------------------
class PaintSpy(QObject):
    def __init__(self) -> None:
        super().__init__()
        self.rects: list[QRect] = []

    def eventFilter(self, _watched: QObject, event: QEvent) -> bool:
        if event.type() == QEvent.Type.Paint:
            self.rects.append(event.rect())
        return False


def hover(canvas, x: float, y: float, buttons=Qt.MouseButton.NoButton) -> None:
    QApplication.sendEvent(canvas, QMouseEvent(QEvent.Type.MouseMove, QPointF(x, y), QPointF(x, y),
                                               Qt.MouseButton.NoButton, buttons, Qt.KeyboardModifier.NoModifier))
    QApplication.processEvents()


def test_hover_and_settings_do_not_rescan_or_redraw_everything(qtbot, make_window, monkeypatch):
    window = make_window(connect=False)
    big = QImage(1200, 800, QImage.Format.Format_RGB32)
    big.fill(0xFF5A5A5A)
    QApplication.clipboard().setImage(big)
    assert window.paste()
    canvas = window.canvas
    window.tool_actions["brush"].trigger()
    window.brush_size.setValue(40)
    QApplication.processEvents()
    scans = []
    real_alpha = RegionMask.alpha
    monkeypatch.setattr(RegionMask, "alpha", lambda mask: (scans.append(1), real_alpha(mask))[1])

    spy = PaintSpy()
    canvas.installEventFilter(spy)
    step = 25
    for x in range(200, 400, step):
        hover(canvas, x, 200)
    brush = 40 * canvas.zoom() + 8  # the outline's size, and a little
    assert spy.rects and all(r.width() <= step + brush and r.height() <= brush for r in spy.rects), spy.rects

    # A brush stroke: no scan of the mask while painting, then one when the stroke ends.
    qtbot.mousePress(canvas, Qt.MouseButton.LeftButton, pos=canvas.rect().center())
    for dx in range(0, 100, 20):
        hover(canvas, canvas.rect().center().x() + dx, canvas.rect().center().y(), Qt.MouseButton.LeftButton)
        canvas.repaint()
    assert scans == []
    qtbot.mouseRelease(canvas, Qt.MouseButton.LeftButton, pos=canvas.rect().center())
    assert window.canvas.mask.bounding_box() is not None and "region" in window.region_label.text()
    scanned = len(scans)
    assert scanned >= 1

    # Settings changes and hovering reuse the region's box.
    for _ in range(3):
        window.panel.changed.emit()
        hover(canvas, 300, 300)
        canvas.repaint()
    assert len(scans) == scanned


def test_previews_reuse_the_converted_input(qtbot, make_window, write_photo, tmp_path, monkeypatch):
    source = tmp_path / "photo.png"
    write_photo(source, 64, 48)
    window = make_window()
    window.open_file(source)
    conversions = []
    real = ui.main_window.to_qimage
    monkeypatch.setattr(ui.main_window, "to_qimage", lambda picture: (conversions.append(picture), real(picture))[1])
    with qtbot.waitSignal(window.runner.finished, timeout=60000):
        window.run()
    assert len(conversions) == 1 and conversions[0] is window.result, "the input was converted again"
    before = window.compare.split_pane.before
    assert (before.width(), before.height()) == (64, 48) and before == window.canvas.image
