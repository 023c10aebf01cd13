"""The window's pure parts: the region mask, remembered settings, progress text, file names, error advice."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from PyQt6.QtCore import QPointF, QRectF

from plugin.uprez_client import EngineNotRunning, QueueFull, RejectedInput
from ui.imageio import BadImage
from ui.main_window import suggested_name
from ui.messages import explain
from ui.queue_panel import describe_job
from ui.region import RegionMask
from ui.settings_store import SETTINGS_FILE, DesktopSettings, load_settings, save_settings


def test_region_mask_rect_feather_and_bytes(qapp):
    mask = RegionMask(40, 30)
    assert mask.is_empty() and mask.mask_bytes() is None
    mask.add_rect(QRectF(10, 5, 20, 16))
    assert mask.bounding_box() == (10, 5, 20, 16)
    hard = mask.values()
    assert hard[7, 12] == 255 and hard[0, 0] == 0 and len(mask.mask_bytes()) == 40 * 30
    soft = mask.values(feather=2)
    assert 0 < soft[13, 9] < 128 < soft[13, 10] < 255 and soft[13, 20] == 255  # a soft edge, a solid middle
    mask.stroke(QPointF(18, 12), QPointF(22, 14), radius=3, erase=True)
    assert mask.values()[13, 20] == 0 and mask.values()[6, 11] == 255


def test_settings_file_survives_bad_values(tmp_path):
    (tmp_path / SETTINGS_FILE).write_text(json.dumps({"scale": "big", "preset": "wild", "seed": True,
                                                      "steps": 8, "model": 3, "unknown": 1}))
    settings = load_settings(tmp_path)
    assert (settings.scale, settings.preset, settings.seed, settings.steps, settings.model) == (
        2.0, "balanced", 0, 8, None)
    (tmp_path / SETTINGS_FILE).write_text("{not json")
    assert load_settings(tmp_path) == DesktopSettings()
    save_settings(DesktopSettings(scale=3.0, model="builtin"), tmp_path)
    assert load_settings(tmp_path).model == "builtin"


def test_job_params_follow_the_settings():
    params = DesktopSettings(scale=3.0, preset="faithful", seed=5, steps=12, prompt=" a cat ").job_params()
    assert params == {"scale": 3.0, "preset": "faithful", "seed": 5, "prompt": "a cat", "steps": 12,
                      "preview_every": 1}
    with pytest.raises(ValueError, match="more than 1"):
        DesktopSettings(scale=1.0).job_params()


def test_settings_live_in_the_folder_the_client_uses(monkeypatch, tmp_path):
    from plugin.uprez_client import config_dir
    from ui.settings_store import config_folder

    monkeypatch.delenv("UPREZ_CONFIG_DIR", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert config_folder() == Path(config_dir())
    if sys.platform.startswith("linux"):
        assert config_folder() == tmp_path / "xdg" / "uprez"
    monkeypatch.setenv("UPREZ_CONFIG_DIR", str(tmp_path / "portable"))
    assert config_folder() == tmp_path / "portable" == Path(config_dir())


def test_region_box_is_scanned_once_per_edit(qapp, monkeypatch):
    mask = RegionMask(60, 40)
    scans = []
    real_alpha = RegionMask.alpha
    monkeypatch.setattr(RegionMask, "alpha", lambda m: (scans.append(1), real_alpha(m))[1])
    assert mask.is_empty() and scans == []  # nothing painted: nothing to scan
    mask.add_rect(QRectF(5, 6, 10, 8))
    assert [mask.bounding_box(), mask.bounding_box(), mask.is_empty()] == [(5, 6, 10, 8), (5, 6, 10, 8), False]
    assert len(scans) == 1
    mask.stroke(QPointF(10, 10), QPointF(10, 10), radius=20, erase=True)  # erases it all
    assert mask.is_empty() and mask.bounding_box() is None and len(scans) == 2
    mask.clear()
    assert mask.is_empty() and len(scans) == 2


def test_suggested_name_is_always_new(tmp_path):
    assert suggested_name(tmp_path, "cat", 2.0).name == "cat-2x.png"
    (tmp_path / "cat-2x.png").touch()
    (tmp_path / "cat-2x-2.png").touch()
    assert suggested_name(tmp_path, "cat", 2.0).name == "cat-2x-3.png"
    assert suggested_name(tmp_path, "cat", 1.5, ".tif").name == "cat-1.5x.tif"


def test_queue_row_text():
    job = {"id": "a", "params": {"width": 640, "height": 480, "scale": 2.0, "model": "/models/flux1-dev/"}}
    assert describe_job(job, {"a"}) == "this window · 640×480 → 2× · flux1-dev"
    assert describe_job({"id": "b", "params": {}}, {"a"}).startswith("another app")


def test_advice_names_the_next_step():
    assert "uprez serve" in explain(EngineNotRunning("no engine at x")).text
    assert explain(EngineNotRunning("x")).retry
    assert "Choose another model" in explain(RejectedInput("model 'x' was not found", 422)).text
    assert "try again in about 7 s" in explain(QueueFull("full", 429, 7.0)).text
    assert "Open a PNG" in explain(BadImage("cannot open a.png")).text


def test_side_by_side_views_zoom_and_pan_together(qtbot):
    from PyQt6.QtCore import QPoint, QSize, Qt
    from PyQt6.QtGui import QImage

    from ui.compare import CompareView

    view = CompareView()
    qtbot.addWidget(view)
    view.resize(900, 500)
    view.show()
    before, after = QImage(50, 40, QImage.Format.Format_RGB32), QImage(200, 160, QImage.Format.Format_RGB32)
    before.fill(0xFF0000FF)
    after.fill(0xFFFF0000)
    view.set_images(before, after, QSize(200, 160))
    view.side_button.click()
    assert view.left_pane.isVisible() and view.right_pane.isVisible() and not view.split_pane.isVisible()
    view.one_button.click()
    assert view.viewport.zoom == 1.0
    assert view.left_pane.image_rect() == view.right_pane.image_rect()
    assert view.right_pane.image_rect().width() == 200  # 1:1: one output pixel per screen pixel
    start = view.right_pane.image_rect()
    qtbot.mousePress(view.left_pane, Qt.MouseButton.LeftButton, pos=QPoint(100, 100))
    qtbot.mouseMove(view.left_pane, QPoint(130, 90))
    qtbot.mouseRelease(view.left_pane, Qt.MouseButton.LeftButton, pos=QPoint(130, 90))
    moved = view.right_pane.image_rect()
    assert (moved.left() - start.left(), moved.top() - start.top()) == (30, -10)  # the other view followed
    assert view.left_pane.image_rect() == moved
    frame = view.right_pane.grab().toImage()
    centre = moved.center().toPoint()
    assert frame.pixelColor(centre).red() == 255  # the right view shows the result
