""""Open in Uprez window" (issue 20 item 4): an editor's layer, written by uprez_client.handoff as the bridges do,
opens in the window with its exact pixels and profile; the window command comes from bridge.json."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import ImageCms

from plugin.uprez_client import handoff


def bgra(rgba: np.ndarray) -> bytes:
    """What Krita's pixelData gives for these RGBA samples: B, G, R, A, little-endian."""
    return np.ascontiguousarray(rgba[..., [2, 1, 0, 3]]).astype(rgba.dtype.newbyteorder("<")).tobytes()


@pytest.mark.parametrize("depth", [8, 16])
def test_a_handed_off_krita_layer_opens_in_the_window_with_its_exact_pixels(make_window, config_dir, depth):
    rng = np.random.default_rng(depth)
    dtype = np.uint8 if depth == 8 else np.uint16
    rgba = rng.integers(0, 256 if depth == 8 else 65536, (23, 37, 4)).astype(dtype)
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("LAB")).tobytes()  # not sRGB: must travel with the file
    path = Path(handoff.handoff_path("Layer 1 / sky"))
    assert path.parent == config_dir / "handoff" and "/" not in path.name[:-4]
    path.write_bytes(handoff.png_bytes(handoff.bgra_to_rgba(bgra(rgba), depth), 37, 23, depth, icc))
    window = make_window(connect=False)
    window.settings.last_folder = "/somewhere/the/person/saves"
    assert window.open_file(path)
    picture = window.picture
    assert picture.depth == depth and np.array_equal(picture.pixels, rgba)
    assert picture.icc == icc
    assert window.settings.last_folder == "/somewhere/the/person/saves"  # not the hand-off folder


def test_the_window_command_comes_from_bridge_json_and_gets_the_file(tmp_path, config_dir):
    assert handoff.gui_command({"start_command": ["/venv/bin/uprez", "serve", "--port", "0"]}) == \
        ["/venv/bin/uprez", "gui"]
    assert handoff.gui_command({"start_command": ["/py", "-m", "engine.cli", "serve"]}) == \
        ["/py", "-m", "engine.cli", "gui"]
    assert handoff.gui_command({}) is None
    with pytest.raises(handoff.HandoffError, match="bridge.json"):
        handoff.open_in_window(str(tmp_path / "x.png"), command=[])
    record = tmp_path / "argv.json"
    script = f"import json, sys; json.dump(sys.argv[1:], open({str(record)!r}, 'w'))"
    (config_dir / "bridge.json").write_text(json.dumps({"gui_command": [sys.executable, "-c", script]}))
    try:
        handoff.open_in_window("/some/layer.png").wait(timeout=60)
    finally:
        (config_dir / "bridge.json").unlink()
    assert json.loads(record.read_text()) == ["/some/layer.png"]


def test_old_handoffs_are_cleaned_up(config_dir):
    folder = config_dir / "handoff"
    folder.mkdir(exist_ok=True)
    old = folder / "old.png"
    old.write_bytes(b"x")
    import os
    import time

    os.utime(old, (time.time() - 8 * 24 * 3600,) * 2)
    handoff.handoff_path("new")
    assert not old.exists()


def test_the_installed_window_entry_point_accepts_a_file(tmp_path):
    done = subprocess.run([sys.executable, "-m", "engine.cli", "gui", "--help"], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0 and "image" in done.stdout
