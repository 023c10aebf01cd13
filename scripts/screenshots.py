"""Render the desktop window's main states offscreen into docs/: empty, region, running with preview, compare.

    python scripts/screenshots.py [--out docs]

Runs a real engine (built-in model) on a thread, in a temporary config folder, and drives the real window.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from PyQt6.QtCore import QEventLoop, QPointF, QRectF  # noqa: E402
from PyQt6.QtWidgets import QApplication  # noqa: E402

SAMPLE = ROOT / "engine" / "data" / "sample.jpg"
SIZE = (1280, 800)


def wait_for(app: QApplication, condition, timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("the window did not reach the state to capture")
        app.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 50)
        time.sleep(0.01)


def settle(app: QApplication, seconds: float = 0.3) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        app.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 20)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    config = Path(tempfile.mkdtemp(prefix="uprez-shots-"))
    os.environ["UPREZ_CONFIG_DIR"] = str(config)

    from engine.server import ServerConfig, start_in_thread

    server = start_in_thread(ServerConfig(host="127.0.0.1", port=0, model="builtin", config_dir=config))
    os.environ["UPREZ_URL"] = server.url
    app = QApplication(sys.argv[:1])
    from ui.main_window import MainWindow
    from ui.settings_store import DesktopSettings

    window = MainWindow(settings=DesktopSettings())
    window.ask = lambda _question: True
    window.resize(*SIZE)
    window.show()
    window.connect_engine()
    wait_for(app, lambda: window.client is not None)
    settle(app)

    def shot(name: str) -> None:
        settle(app)
        path = args.out / f"desktop-{name}.png"
        window.grab().save(str(path))
        print(f"wrote {path}")

    shot("empty")

    window.open_file(SAMPLE)
    mask = window.canvas.mask
    mask.add_rect(QRectF(150, 120, 230, 250))  # the face and cap
    mask.stroke(QPointF(330, 480), QPointF(420, 500), radius=30)  # and a brushed patch on the medals
    window.canvas.set_feather(8)
    window.canvas.region_changed.emit()
    shot("region")

    # Running: 4x in two stages with a preview every step; captured at a preview of the second stage.
    window.canvas.clear_region()
    window.panel.scale.setCurrentText("4×")
    window.panel.advanced_button.setChecked(True)
    window.panel.steps.setValue(3)
    previews: list[int] = []
    window.runner.preview.connect(lambda _image: previews.append(window.progress.value()))
    window.run()
    wait_for(app, lambda: any(p >= 50 for p in previews) or not window.runner.running)
    polls: list[int] = []
    window.queue.polled.connect(lambda _jobs: polls.append(1))
    wait_for(app, lambda: bool(polls) or not window.runner.running)  # the queue row catches up
    shot("running")
    window.cancel()  # the rest of that run shows nothing new
    wait_for(app, lambda: not window.runner.running)

    # Compare: a plain 2x, at 1:1 around the face, split down the middle.
    window.panel.scale.setCurrentText("2×")
    window.panel.steps.setValue(0)
    window.panel.advanced_button.setChecked(False)
    window.run()
    wait_for(app, lambda: not window.runner.running)
    if window.result is None:
        raise SystemExit(f"the run failed: {window.banner.text()}")
    window.compare.viewport.zoom = 1.0
    window.compare.viewport.centre = QPointF(540, 520)
    window.compare.viewport.changed.emit()
    window.compare.slider.setValue(500)
    shot("compare")

    window.close()
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
