"""Cancelling, the engine queue (jobs from other apps too), and the errors the window explains."""

from __future__ import annotations

import numpy as np
from PyQt6.QtCore import Qt

# A job that runs for seconds on the tiny FLUX model: 200 steps from pure noise, two 2x stages.
SLOW = {"steps": 200, "strength": 1.0, "scale": 4}


def choose_slow_flux(window, tiny_flux) -> None:
    panel = window.panel
    index = panel.model.findData(str(tiny_flux))
    assert index > 0, "the engine should list the tiny FLUX folder"
    panel.model.setCurrentIndex(index)
    panel.scale.setCurrentText("4×")
    panel.advanced_button.setChecked(True)
    panel.steps.setValue(SLOW["steps"])
    panel.strength.setValue(SLOW["strength"])


def test_cancel_mid_run(qtbot, make_window, write_photo, tmp_path, tiny_flux, engine_client):
    source = tmp_path / "photo.png"
    write_photo(source, 96, 72)  # large enough that a fast machine still takes seconds
    window = make_window()
    window.open_file(source)
    choose_slow_flux(window, tiny_flux)
    window.run()
    qtbot.waitUntil(lambda: 0 < window.progress.value() < 100, timeout=30000)
    assert "step" in window.status_label.text() and "left" in window.status_label.text()
    job_id = window.runner.job_id
    with qtbot.waitSignal(window.runner.cancelled, timeout=20000):
        qtbot.mouseClick(window.cancel_button, Qt.MouseButton.LeftButton)
    assert engine_client.job(job_id)["state"] == "cancelled"
    assert window.result is None and window.picture is not None  # nothing lost, nothing half-made
    assert "Cancelled" in window.status_label.text() and window.run_button.isEnabled()
    assert window.panel.advanced.isVisible() and window.panel.steps.value() == 200  # settings kept


def test_queue_lists_and_cancels_another_apps_job(qtbot, make_window, engine_client, tiny_flux):
    window = make_window()
    # What the Krita bridge sends: raw BGRA bytes.
    pixels = np.random.default_rng(0).integers(0, 255, (72, 96, 4), dtype=np.uint8)
    job_id = engine_client.submit_raw(pixels.tobytes(), 96, 72, "BGRA", 8, model=str(tiny_flux), client="Krita",
                                      **SLOW)
    queue = window.queue

    def row_running() -> bool:
        row = queue.row_of(job_id)
        return row is not None and queue.table.cellWidget(row, 2).value() > 0

    qtbot.waitUntil(row_running, timeout=30000)
    row = queue.row_of(job_id)
    assert queue.table.item(row, 0).text().startswith("Krita · 96×72 → 4×")
    assert queue.table.item(row, 1).text() == "running"
    button = queue.table.cellWidget(row, 3)
    assert button.text() == "Cancel"
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: engine_client.job(job_id)["state"] == "cancelled", timeout=20000)
    qtbot.waitUntil(lambda: queue.table.item(queue.row_of(job_id), 1).text() == "cancelled", timeout=5000)
    assert queue.table.cellWidget(queue.row_of(job_id), 3) is None  # nothing to cancel any more


def test_bad_file_is_explained_and_keeps_the_open_image(make_window, write_photo, tmp_path):
    window = make_window(connect=False)
    good = tmp_path / "good.png"
    write_photo(good, 40, 30)
    assert window.open_file(good)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really a png" * 10)
    assert not window.open_file(broken)
    text = window.banner.text()
    assert "broken.png" in text and "Open a PNG, JPEG, WebP or TIFF" in text
    assert window.banner.kind == "error" and window.picture.name == "good"
    assert not window.open_file(tmp_path / "missing.jpg")
    assert "does not exist" in window.banner.text()
    window.open_file(good)
    assert window.banner.isHidden()  # a good file clears the old complaint


def test_missing_model_says_what_to_do(qtbot, make_window, write_photo, tmp_path):
    from ui.settings_store import DesktopSettings

    window = make_window(DesktopSettings(model=str(tmp_path / "gone-model")))
    assert "not listed" in window.panel.model.currentText()  # remembered, though the engine lacks it
    source = tmp_path / "photo.png"
    write_photo(source, 40, 30)
    window.open_file(source)
    with qtbot.waitSignal(window.runner.failed, timeout=20000):
        window.run()
    text = window.banner.text()
    assert "gone-model" in text and "Choose another model" in text
    assert window.run_button.isEnabled() and window.picture is not None


def test_bad_scale_is_refused_before_sending(make_window, write_photo, tmp_path):
    window = make_window()
    source = tmp_path / "photo.png"
    write_photo(source, 40, 30)
    window.open_file(source)
    window.panel.scale.setCurrentText("0.5x")
    window.run()
    assert not window.runner.running and "more than 1" in window.banner.text()


def test_out_of_memory_message_says_what_to_change() -> None:
    from plugin.uprez_client import JobFailed
    from ui.messages import explain

    advice = explain(JobFailed("out of memory, also after retrying with smaller tiles (CUDA out of memory)"))
    assert "smaller scale" in advice.text and "tile size" in advice.text and "region" in advice.text


def test_model_list_refreshes(qtbot, make_window, tiny_flux):
    window = make_window()
    fresh = tiny_flux.parent / "fresh-model"
    fresh.mkdir()
    try:
        (fresh / "model_index.json").write_text("{}")  # what makes a folder a diffusers model to the listing
        assert window.panel.model.findData(str(fresh)) < 0
        window.panel.model.setCurrentIndex(window.panel.model.findData("builtin"))
        window.panel.refresh.click()
        qtbot.waitUntil(lambda: window.panel.model.findData(str(fresh)) > 0, timeout=10000)
        assert window.panel.model.currentData() == "builtin"  # the choice survives the refresh
    finally:
        (fresh / "model_index.json").unlink()
        fresh.rmdir()
