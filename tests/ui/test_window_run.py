"""The window end to end against a real engine: open, region, run, progress, compare, save; 16-bit; clipboard."""

from __future__ import annotations

import time

import numpy as np
import png
import tifffile
from PIL import Image
from PyQt6.QtCore import QMimeData, QPoint, QPointF, Qt, QTimer, QUrl
from PyQt6.QtGui import QDropEvent, QImage
from PyQt6.QtWidgets import QApplication

from ui.main_window import COMPARE_TAB


def widget_point(canvas, x: float, y: float) -> QPoint:
    return canvas.to_widget(QPointF(x, y)).toPoint()


def test_open_region_run_compare_save(qtbot, make_window, write_photo, engine_client, tmp_path):
    source = tmp_path / "photo.png"
    pixels = write_photo(source, 96, 80)
    window = make_window()
    assert window.open_file(source)
    assert (window.canvas.picture.width, window.canvas.picture.height) == (96, 80)

    # A rectangle dragged on the canvas becomes the region.
    qtbot.mousePress(window.canvas, Qt.MouseButton.LeftButton, pos=widget_point(window.canvas, 20, 16))
    qtbot.mouseRelease(window.canvas, Qt.MouseButton.LeftButton, pos=widget_point(window.canvas, 52, 48))
    x, y, w, h = window.canvas.mask.bounding_box()
    assert abs(x - 20) <= 1 and abs(y - 16) <= 1 and abs(w - 32) <= 2 and abs(h - 32) <= 2
    window.feather.setValue(2)
    assert "region" in window.region_label.text()

    seen: list[int] = []
    window.progress.valueChanged.connect(seen.append)
    with qtbot.waitSignal(window.runner.finished, timeout=60000):
        qtbot.mouseClick(window.run_button, Qt.MouseButton.LeftButton)
        assert not window.run_button.isEnabled() and window.cancel_button.isEnabled()
    assert window.progress.value() == 100 and seen[-1] == 100 and seen == sorted(seen)
    assert "done" in window.progress.text()
    result = window.result
    assert (result.width, result.height, result.depth, result.has_alpha) == (192, 160, 8, False)

    # The mask reached the engine: far from the region the result is the plain Lanczos upscale (strength 0),
    # inside it the model changed pixels.
    plain_id = engine_client.submit_raw(pixels.tobytes(), 96, 80, "RGB", 8, scale=2, strength=0.0)
    engine_client.wait(plain_id)
    plain = np.frombuffer(engine_client.result(plain_id)[0], np.uint8).reshape(160, 192, 3)
    outside = np.ones((160, 192), bool)
    outside[16 * 2 - 16:48 * 2 + 16, 20 * 2 - 16:52 * 2 + 16] = False
    assert np.array_equal(result.pixels[outside], plain[outside])
    assert np.abs(result.pixels[40:90, 48:96].astype(int) - plain[40:90, 48:96]).mean() > 0.5

    # Compare: the split slider moves the before/after line across the image.
    assert window.tabs.currentIndex() == COMPARE_TAB
    pane = window.compare.split_pane
    for value in (250, 800):
        window.compare.slider.setValue(value)
        expected = pane.width() * value / 1000
        frame = pane.grab().toImage()
        column = round(expected)
        whites = sum(QImage.pixel(frame, column + dx, y) & 0xFFFFFF == 0xFFFFFF
                     for dx in (-1, 0, 1) for y in range(0, frame.height(), 7))
        assert whites >= frame.height() // 7, f"no split line at x={column} for slider {value}"
    window.compare.one_button.click()
    assert window.compare.viewport.zoom == 1.0 and "100 %" in window.compare.zoom_label.text()

    # Save: a new file twice the size; the same name again is only replaced when the person says yes.
    target = tmp_path / "photo-2x.png"
    assert window.save_result_to(target)
    with Image.open(target) as saved:
        assert saved.size == (192, 160)
    before = target.read_bytes()
    window.ask.reply = False
    assert not window.save_result_to(target)
    assert window.ask.asked and "already exists" in window.ask.asked[-1]
    assert target.read_bytes() == before
    assert not window.save_result_to(source), "the opened original must never be written over"
    assert source.stat().st_size > 0 and "never writes over" in window.banner.text()


def test_16bit_with_alpha_survives_to_tiff_and_png(qtbot, make_window, tmp_path):
    rng = np.random.default_rng(3)
    base = np.linspace(0, 65535, 48 * 40 * 4).reshape(40, 48, 4)
    pixels = np.clip(base + rng.integers(-300, 300, base.shape), 0, 65535).astype(np.uint16)
    source = tmp_path / "deep.png"
    png.from_array(pixels.reshape(40, 48 * 4), "RGBA;16").save(str(source))
    window = make_window()
    assert window.open_file(source)
    assert window.picture.depth == 16 and window.picture.has_alpha
    with qtbot.waitSignal(window.runner.finished, timeout=60000):
        window.run()
    assert window.result.depth == 16

    tif = tmp_path / "deep-2x.tif"
    assert window.save_result_to(tif)
    stored = tifffile.imread(str(tif))
    assert stored.dtype == np.uint16 and stored.shape == (80, 96, 4)
    assert (stored[:, :, :3] % 257 != 0).mean() > 0.5, "16-bit precision was lost (values look like 8-bit * 257)"
    assert np.abs(stored[:, :, 3].astype(int) - np.kron(pixels[:, :, 3], np.ones((2, 2))).astype(int)).mean() < 600

    out_png = tmp_path / "deep-2x.png"
    assert window.save_result_to(out_png)
    width, height, _rows, info = png.Reader(filename=str(out_png)).read()
    assert (width, height, info["bitdepth"], info["alpha"]) == (96, 80, 16, True)

    jpeg = tmp_path / "deep-2x.jpg"
    assert window.save_result_to(jpeg)
    with Image.open(jpeg) as saved:
        assert saved.size == (96, 80) and saved.mode == "RGB"


def test_paste_drop_and_copy(qtbot, make_window, tmp_path, write_photo):
    window = make_window()
    clipboard = QApplication.clipboard()
    image = QImage(50, 30, QImage.Format.Format_RGB32)
    image.fill(0xFF3366AA)
    clipboard.setImage(image)
    assert window.paste()
    assert (window.picture.width, window.picture.height, window.picture.name) == (50, 30, "pasted")
    assert tuple(window.picture.pixels[0, 0]) == (0x33, 0x66, 0xAA)

    with qtbot.waitSignal(window.runner.finished, timeout=60000):
        window.run()
    window.copy_result()
    copied = clipboard.image()
    assert (copied.width(), copied.height()) == (100, 60)

    dropped = tmp_path / "dropped.png"
    write_photo(dropped, 40, 32)
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(dropped))])
    event = QDropEvent(QPointF(10, 10), Qt.DropAction.CopyAction, mime, Qt.MouseButton.NoButton,
                       Qt.KeyboardModifier.NoModifier)
    window.dropEvent(event)
    assert (window.picture.width, window.picture.height, window.picture.name) == (40, 32, "dropped")


def test_brush_and_erase_paint_a_soft_region(make_window, write_photo, tmp_path, qtbot):
    source = tmp_path / "photo.png"
    write_photo(source, 96, 80)
    window = make_window(connect=False)
    window.open_file(source)
    window.tool_actions["brush"].trigger()
    window.brush_size.setValue(20)
    qtbot.mousePress(window.canvas, Qt.MouseButton.LeftButton, pos=widget_point(window.canvas, 30, 40))
    qtbot.mouseRelease(window.canvas, Qt.MouseButton.LeftButton, pos=widget_point(window.canvas, 30, 40))
    painted = window.canvas.mask.alpha()
    assert painted[40, 30] == 255 and 0 < painted[40, 38] < 255 and painted[40, 45] == 0  # solid core, soft rim
    window.tool_actions["erase"].trigger()
    qtbot.mousePress(window.canvas, Qt.MouseButton.LeftButton, pos=widget_point(window.canvas, 30, 40))
    qtbot.mouseRelease(window.canvas, Qt.MouseButton.LeftButton, pos=widget_point(window.canvas, 30, 40))
    assert window.canvas.mask.alpha()[40, 30] == 0
    window.clear_action.trigger()
    assert window.canvas.mask_bytes() is None and "whole image" in window.region_label.text()


def test_region_label_follows_the_feather(make_window, write_photo, tmp_path, qtbot):
    source = tmp_path / "photo.png"
    write_photo(source, 96, 80)
    window = make_window(connect=False)
    window.open_file(source)
    qtbot.mousePress(window.canvas, Qt.MouseButton.LeftButton, pos=widget_point(window.canvas, 20, 16))
    qtbot.mouseRelease(window.canvas, Qt.MouseButton.LeftButton, pos=widget_point(window.canvas, 52, 48))
    new_feather = window.feather.value() + 9
    assert f"soft edge {new_feather} px" not in window.region_label.text()
    window.feather.setValue(new_feather)
    assert f"soft edge {new_feather} px" in window.region_label.text()


def test_window_stays_responsive_while_the_engine_works(qtbot, make_window, write_photo, tmp_path):
    """Timer ticks keep coming while a job uploads, runs and downloads: no network call on the GUI thread."""
    source = tmp_path / "big.png"
    write_photo(source, 320, 256)
    window = make_window()
    window.open_file(source)
    ticks: list[float] = []
    timer = QTimer()
    timer.setInterval(20)
    timer.timeout.connect(lambda: ticks.append(time.monotonic()))
    timer.start()
    try:
        with qtbot.waitSignal(window.runner.finished, timeout=90000):
            window.run()
    finally:
        timer.stop()
    assert len(ticks) > 5
    assert max(np.diff(ticks)) < 0.5, f"the GUI thread was blocked for {max(np.diff(ticks)):.2f} s"
