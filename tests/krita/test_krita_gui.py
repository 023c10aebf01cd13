"""The bridge in the real Krita GUI (under Xvfb), in each Krita version (kritas.py): the menu action opens the
dialog on the document in front; the dialog remembers its choices per document; "Upscale selection with Uprez"
runs the last choices without the dialog; how many undo steps a "Resize canvas" result takes; "Open in Uprez
window" hands the layer over; closing a document cancels its job in the engine through Krita's close notification.

kritarunner cannot show these: it has no main window (actions are made per window, and
Krita.openWindow() crashes under kritarunner 5.1), and without views no close notification fires.
The bridge is installed the way users get it (installers/install.py into a throwaway home).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import kritas
import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "installers"))

from test_krita_zip import PROBE_DESKTOP, krita_env  # noqa: E402

from installers import kritarc  # noqa: E402

pytestmark = [pytest.mark.slow]
UNDO_FINDINGS: dict[str, list] = {}  # version -> the document after each Edit > Undo (docs/krita.md cites them)

PROBE = (Path(__file__).resolve().parent / "gui_probe.py").read_text()


# The host's Krita and the newest; UPREZ_KRITA_ALL_VERSIONS=1 adds Krita 5.3 (it passed there too: docs/krita.md), which
# CI leaves out for time.
GUI_VERSIONS = kritas.VERSIONS if os.environ.get("UPREZ_KRITA_ALL_VERSIONS") else ("host", kritas.NEWEST)


@pytest.mark.parametrize("version", GUI_VERSIONS)
def test_the_actions_dialog_memory_quick_action_undo_and_hand_off_in_the_real_krita(tmp_path, serve_process,
                                                                                  tiny_flux, version):
    engine = serve_process("--model", "builtin", "--model-dir", str(tiny_flux.parent))
    env = krita_env(tmp_path)
    (Path(env["XDG_DATA_HOME"]) / "krita").mkdir()  # Krita has run here once
    done = subprocess.run([sys.executable, str(ROOT / "installers" / "install.py"), "--skip-engine", "--no-gimp"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    pykrita = Path(env["XDG_DATA_HOME"]) / "krita" / "pykrita"
    (pykrita / "uprez_probe").mkdir()
    (pykrita / "uprez_probe" / "__init__.py").write_text(PROBE)
    (pykrita / "uprez_probe.desktop").write_text(PROBE_DESKTOP)
    kritarc.set_value(Path(env["XDG_CONFIG_HOME"]) / "kritarc", "python", "enable_uprez_probe", "true")
    report_file = tmp_path / "probe.json"
    env = {**env, "UPREZ_CONFIG_DIR": str(engine.config_dir), "UPREZ_PROBE_OUT": str(report_file),
           "UPREZ_SLOW_MODEL": str(tiny_flux)}
    krita = kritas.run(version, ["sh", str(ROOT / "tests" / "krita" / "with-xvfb.sh"), "krita", "--nosplash"], env,
                       [tmp_path, engine.config_dir], timeout=400)
    assert report_file.is_file(), f"Krita exited ({krita.returncode}) without the probe's report:\n" \
                                  f"{krita.stderr[-3000:]}"
    report = json.loads(report_file.read_text())
    assert "error" not in report, report["error"]
    assert report["platform"] == "xcb"  # a real X window system (under Xvfb), as people run Krita
    assert report["front_is_probe"]
    assert report["dialog_visible"] and report["dialog_on_probe"]
    assert report["selection_only_enabled"] is False  # nothing is selected in the probe's document
    assert report["actions"] == {"uprez_upscale": "Upscale with Uprez…",
                                 "uprez_upscale_selection": "Upscale selection with Uprez",
                                 "uprez_open_in_window": "Open in Uprez window…"}
    # Per document: a new document starts from the last choices; each then keeps its own.
    assert report["other_starts_from_last"] == ["3×", 77, "detail.safetensors:0.5"]
    assert report["probe_again"] == [True, "3×", 77, "detail.safetensors:0.5"]
    assert report["other_again"] == [True, "4×", 5, ""]
    # The quick action: no dialog, the last settings (2x), the selection only, a new layer in the resized canvas.
    before, after = report["quick_before"], report["quick_after"]
    assert report["quick_dialog_hidden"]
    assert after["size"] == [128, 96] and len(after["layers"]) == len(before["layers"]) + 1
    assert "selection ×2 Uprez" in after["layers"][-1]
    x, y, w, h = report["quick_layer_bounds"]
    assert x <= 32 and y <= 24 and x + w >= 80 and y + h >= 56 and w < 128  # the selection's region, scaled
    # Undo: Krita's scripting API has no undo group, so the result is two steps: the layer, then the scaling.
    UNDO_FINDINGS[version] = report["undo_steps"]
    assert report["undo_steps"][0] == {"size": [128, 96], "layers": before["layers"]}
    assert report["undo_steps"][1] == before
    assert not [name for name in report["undo_api"] if "undo" in name.lower() or "macro" in name.lower()], \
        report["undo_api"]
    # Open in Uprez window: the layer's pixels, as a PNG, went to the window command.
    with Image.open(tmp_path / "opened.png") as opened:
        assert opened.size == (64, 48)
        assert np.all(np.asarray(opened.convert("RGBA")) == [255, 128, 0, 255])
    assert report["running_before_close"]
    assert report["job_state"] == "cancelled"
    assert report["engine_state"] == "cancelled"
    print(f"ran in {kritas.LABELS[version]} {report['krita']} ({report['qt']})")
