"""The bridge in the real Krita GUI (under Xvfb): the menu action opens the dialog on the document in front,
and closing a document cancels its job in the engine through Krita's own close notification.

kritarunner cannot show these: it has no main window (actions are made per window, and
Krita.openWindow() crashes under kritarunner 5.1), and without views no close notification fires.
The bridge is installed the way users get it (installers/install.py into a throwaway home).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "installers"))

from test_krita_zip import PROBE_DESKTOP, krita_env  # noqa: E402

from installers import kritarc  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not all(shutil.which(t) for t in ("krita", "xvfb-run")),
                                                   reason="needs Krita and xvfb-run: apt-get install krita xvfb")]

PROBE = '''
"""Test probe: drive the Uprez plug-in in the live Krita window, write what happened, quit."""
import json, os, time, traceback
from krita import Extension, Krita


def pump(seconds, until=lambda: False):
    from PyQt5.QtWidgets import QApplication
    end = time.monotonic() + seconds
    while time.monotonic() < end and not until():
        QApplication.processEvents()
        time.sleep(0.02)


def run():
    out = {}
    try:
        app = Krita.instance()
        doc = app.createDocument(64, 48, "probe", "RGBA", "U8", "", 72.0)
        layer = doc.createNode("src", "paintlayer")
        layer.setPixelData(bytes([0, 128, 255, 255]) * (64 * 48), 0, 0, 64, 48)
        doc.rootNode().addChildNode(layer, None)
        app.activeWindow().addView(doc)
        pump(1.0)
        out["front_is_probe"] = app.activeDocument() == doc
        app.action("uprez_upscale").trigger()  # what Tools > Scripts > Upscale with Uprez... does
        pump(1.0)
        extension = next(e for e in app.extensions() if type(e).__name__ == "UprezExtension")
        dialog = extension._dialog
        out["dialog_visible"] = bool(dialog is not None and dialog.isVisible())
        out["dialog_on_probe"] = bool(dialog is not None and dialog.document == doc)
        out["selection_only_enabled"] = bool(dialog is not None and dialog.selection_only.isEnabled())
        dialog.hide()

        import uprez_krita
        from uprez_krita.client_import import uprez_client
        seen = []
        job = uprez_krita.upscale(doc, scale=4.0, node=layer, wait=False, start_engine=False,
                                  model=os.environ["UPREZ_SLOW_MODEL"], steps=200, strength=1.0)
        job.event.connect(lambda e: seen.append(e.kind))  # uprez_client.JobEvent
        pump(60, lambda: "progress" in seen)
        out["running_before_close"] = job.state == "running" and "progress" in seen
        doc.setModified(False)
        doc.close()  # the person closes the document while the engine works
        pump(30, lambda: job.state != "running")
        out["job_state"] = job.state
        out["engine_state"] = uprez_client.Client().job(job.job_id)["state"]
    except Exception:
        out["error"] = traceback.format_exc()
    with open(os.environ["UPREZ_PROBE_OUT"], "w") as f:
        json.dump(out, f)
    os._exit(0)  # Krita's shutdown would wait on autosave prompts; the report is all we need


class Probe(Extension):
    def setup(self):
        pass

    def createActions(self, window):
        from PyQt5.QtCore import QTimer
        QTimer.singleShot(500, run)  # after every plug-in's createActions, once the window is up


Krita.instance().addExtension(Probe(Krita.instance()))
'''


def test_the_menu_action_opens_the_dialog_and_closing_the_document_cancels_its_job(tmp_path, serve_process,
                                                                                   tiny_flux):
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
    krita = subprocess.run(["xvfb-run", "-a", "krita", "--nosplash"], capture_output=True, text=True, timeout=300,
                           env={**env, "UPREZ_CONFIG_DIR": str(engine.config_dir), "UPREZ_PROBE_OUT": str(report_file),
                                "UPREZ_SLOW_MODEL": str(tiny_flux)})
    assert report_file.is_file(), f"Krita exited ({krita.returncode}) without the probe's report:\n" \
                                  f"{krita.stderr[-3000:]}"
    report = json.loads(report_file.read_text())
    assert "error" not in report, report["error"]
    assert report["front_is_probe"]
    assert report["dialog_visible"] and report["dialog_on_probe"]
    assert report["selection_only_enabled"] is False  # nothing is selected in the probe's document
    assert report["running_before_close"]
    assert report["job_state"] == "cancelled"
    assert report["engine_state"] == "cancelled"
