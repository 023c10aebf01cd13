"""The zip for Krita's "Import Python Plugin from File...", checked by the real Krita."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
from layouts import PLUGIN, ROOT
from needs import missing

from installers import install, kritarc

KRITA_BRIDGE = PLUGIN / "krita" / "uprez_krita"
def test_zip_holds_the_plugin_its_client_and_the_folder_entries_krita_looks_for(tmp_path, capsys):
    out = tmp_path / "uprez_krita.zip"
    assert install.main(["--build-krita-zip", str(out)]) == 0
    names = zipfile.ZipFile(out).namelist()
    # Krita's importer finds a module by its *directory entry* holding an __init__.py
    assert {"uprez_krita/", "uprez_krita.desktop", "uprez_krita/__init__.py",
            "uprez_krita/uprez_client/", "uprez_krita/uprez_client/__init__.py"} <= set(names)
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    desktop = zipfile.ZipFile(out).read("uprez_krita.desktop").decode()
    assert "X-KDE-Library=uprez_krita" in desktop
    again = tmp_path / "again.zip"
    assert install.main(["--build-krita-zip", str(again)]) == 0
    assert again.read_bytes() == out.read_bytes()  # same sources, same bytes: a release can be rebuilt and compared


IMPORT_SCRIPT = '''
"""Run inside kritarunner: Krita's own "Import Python Plugin from File" code on the zip."""
import json, os

def main(*_args):
    from plugin_importer.plugin_importer import PluginImporter

    imported = PluginImporter(os.environ["UPREZ_ZIP"], os.environ["UPREZ_RESOURCES"], lambda plugin: True).import_all()
    with open(os.environ["UPREZ_OUT"], "w") as f:
        json.dump([p["name"] for p in imported], f)
'''

PROBE_DESKTOP = """[Desktop Entry]
Type=Service
ServiceTypes=Krita/PythonPlugin
X-KDE-Library=uprez_probe
X-Python-2-Compatible=false
Name=Uprez test probe
"""

PROBE = '''
"""Test probe: once Krita's first window has its actions, report what the Uprez plug-in registered, then quit."""
import json, os, sys
from krita import Extension, Krita

def report():
    app = Krita.instance()
    action = app.action("uprez_upscale")
    module, client = sys.modules.get("uprez_krita"), sys.modules.get("uprez_krita.uprez_client")
    with open(os.environ["UPREZ_PROBE_OUT"], "w") as f:
        json.dump({"action": action is not None, "text": action.text() if action else None,
                   "module": getattr(module, "__file__", None), "client": getattr(client, "__file__", None)}, f)
    os._exit(0)  # Krita's own shutdown would wait on autosave and dialogs; the report is all we need

class Probe(Extension):
    def setup(self):
        pass

    def createActions(self, window):
        from PyQt5.QtCore import QTimer
        QTimer.singleShot(0, report)  # runs after every plug-in's createActions for this window

Krita.instance().addExtension(Probe(Krita.instance()))
'''


needs_krita = pytest.mark.usefixtures("krita_and_xvfb")


@pytest.fixture
def krita_and_xvfb() -> None:
    if not all(shutil.which(t) for t in ("krita", "kritarunner")):
        missing("krita", "needs Krita (krita, kritarunner): apt-get install krita xvfb")
    if not shutil.which("xvfb-run"):
        missing("xvfb", "needs xvfb-run: apt-get install xvfb")


def krita_env(tmp_path) -> dict:
    """A home, XDG folders and PATH of the test's own, so the user's Krita settings are never touched."""
    dirs = {name: tmp_path / name for name in ("home", "data", "config", "cache", "runtime")}
    for folder in dirs.values():
        folder.mkdir(mode=0o700)
    # Krita's embedded Python finds its prefix from the first python3 on PATH: a pyenv or venv one would hide
    # the system's PyQt5 from it.
    others = [p for p in os.environ["PATH"].split(os.pathsep)
              if "pyenv" not in p and not os.path.isfile(os.path.join(p, "activate"))]
    return {"PATH": os.pathsep.join(["/usr/bin", "/bin", *others]), "HOME": str(dirs["home"]),
            "XDG_DATA_HOME": str(dirs["data"]), "XDG_CONFIG_HOME": str(dirs["config"]),
            "XDG_CACHE_HOME": str(dirs["cache"]), "XDG_RUNTIME_DIR": str(dirs["runtime"]),
            "UPREZ_CONFIG_DIR": str(dirs["config"] / "uprez")}


def krita_report(env: dict, tmp_path) -> dict:
    """Start the real Krita (offscreen, under Xvfb) with a probe plug-in that reports the Uprez action, then quits."""
    pykrita = Path(env["XDG_DATA_HOME"]) / "krita" / "pykrita"
    (pykrita / "uprez_probe").mkdir(parents=True)
    (pykrita / "uprez_probe" / "__init__.py").write_text(PROBE)
    (pykrita / "uprez_probe.desktop").write_text(PROBE_DESKTOP)
    kritarc.set_value(Path(env["XDG_CONFIG_HOME"]) / "kritarc", "python", "enable_uprez_probe", "true")
    report_file = tmp_path / "probe.json"
    krita = subprocess.run(["xvfb-run", "-a", "krita", "--nosplash"], capture_output=True, text=True, timeout=300,
                           env={**env, "UPREZ_PROBE_OUT": str(report_file)})
    assert report_file.is_file(), f"Krita exited ({krita.returncode}) without the probe's report:\n" \
                                  f"{krita.stderr[-3000:]}"
    return json.loads(report_file.read_text())


def assert_loaded_from(report: dict, pykrita: Path) -> None:
    assert report["action"] and report["text"] == "Upscale with Uprez…"
    assert report["module"] == str(pykrita / "uprez_krita" / "__init__.py")  # the installed copy, not the checkout
    assert report["client"] == str(pykrita / "uprez_krita" / "uprez_client" / "__init__.py")
    assert str(ROOT) not in report["module"]


@pytest.mark.slow
@needs_krita
def test_krita_imports_the_zip_and_registers_the_action(tmp_path, capsys):
    """Step 1: kritarunner runs Krita's importer on the zip (what Tools > Scripts > Import Python Plugin from
    File... does). Step 2: the real Krita starts with the plug-in enabled as the importer's dialog enables it, and a
    probe plug-in reports the `uprez_upscale` action. kritarunner alone cannot show this: actions are created per
    main window, and kritarunner 5.1 has none (Krita.openWindow() crashes there)."""
    out = tmp_path / "uprez_krita.zip"
    assert install.main(["--build-krita-zip", str(out)]) == 0
    env = krita_env(tmp_path)
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    (scripts / "uprez_import_zip.py").write_text(IMPORT_SCRIPT)
    resources = Path(env["XDG_DATA_HOME"]) / "krita"  # the resource folder of this XDG_DATA_HOME
    resources.mkdir()
    started = time.monotonic()
    imported = subprocess.run(
        ["kritarunner", "-s", "uprez_import_zip", "-f", "main"], capture_output=True, text=True, timeout=300,
        env={**env, "QT_QPA_PLATFORM": "offscreen", "PYTHONPATH": str(scripts), "UPREZ_ZIP": str(out),
             "UPREZ_RESOURCES": str(resources), "UPREZ_OUT": str(tmp_path / "imported.json")})
    assert imported.returncode == 0 and (tmp_path / "imported.json").is_file(), imported.stderr[-3000:]
    assert json.loads((tmp_path / "imported.json").read_text()) == ["uprez_krita"]
    import_s = time.monotonic() - started
    # enabled as the importer's dialog does it: Application.writeSetting("python", "enable_<name>", "true")
    kritarc.set_value(Path(env["XDG_CONFIG_HOME"]) / "kritarc", "python", "enable_uprez_krita", "true")
    started = time.monotonic()
    report = krita_report(env, tmp_path)
    with capsys.disabled():
        print(f"\nkritarunner import {import_s:.0f} s, Krita start to action {time.monotonic() - started:.0f} s")
    assert_loaded_from(report, resources / "pykrita")


@pytest.mark.slow
@needs_krita
def test_krita_loads_what_the_installer_put_in_place(tmp_path, capsys):
    """The one-command path: install.py (Linux layout) copies the bridge and enables it in kritarc; Krita runs it."""
    env = krita_env(tmp_path)
    resources = Path(env["XDG_DATA_HOME"]) / "krita"
    resources.mkdir()  # Krita has run here once
    done = subprocess.run([sys.executable, str(ROOT / "installers" / "install.py"), "--skip-engine", "--no-gimp"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert kritarc.get(Path(env["XDG_CONFIG_HOME"]) / "kritarc", "python", "enable_uprez_krita") == "true"
    assert_loaded_from(krita_report(env, tmp_path), resources / "pykrita")
