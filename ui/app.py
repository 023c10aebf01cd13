"""`uprez-gui` / `uprez gui`: start the desktop window (and, if no engine answers, an engine beside it)."""

from __future__ import annotations

import argparse
import signal
import sys

from PyQt6.QtCore import QTimer
from PyQt6.QtWidgets import QApplication

from ui.main_window import MainWindow


def build_window(image: str | None = None) -> MainWindow:
    """The window, connecting to (or starting) the engine, with `image` opened if given."""
    window = MainWindow()
    window.resize(1280, 820)
    if image:
        window.open_file(image)
    window.connect_engine()
    return window


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="uprez-gui", description="The Uprez desktop window.")
    parser.add_argument("image", nargs="?", help="an image to open")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("Uprez")
    window = build_window(args.image)
    window.show()
    # Ctrl-C in the terminal quits like closing the window would. Qt's loop never runs Python code on its own,
    # so a timer gives Python a moment to see the signal.
    previous = signal.signal(signal.SIGINT, lambda *_: window.close())
    ticker = QTimer()
    ticker.timeout.connect(lambda: None)
    ticker.start(250)
    try:
        return app.exec()
    finally:
        signal.signal(signal.SIGINT, previous)
        window.runner.shutdown()
        window.link.shutdown()  # idempotent: stops the engine only if this window started it


if __name__ == "__main__":
    sys.exit(main())
