"""`uprez-gui` / `uprez gui`: start the desktop window (and, if no engine answers, an engine beside it)."""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import traceback
from collections.abc import Callable
from types import TracebackType

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


ExceptHook = Callable[[type[BaseException], BaseException, TracebackType | None], object]


def install_error_hook(window: MainWindow) -> ExceptHook:
    """Route uncaught exceptions to the window's banner (and the traceback to stderr); returns the old hook.

    PyQt6 aborts the whole process (qFatal) on an exception escaping a slot while the default hook is in place;
    that would lose an unsaved result over one bug. With a hook of our own PyQt reports it there and goes on.
    """
    previous = sys.excepthook

    def hook(kind: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
        traceback.print_exception(kind, exc, tb, file=sys.stderr)
        with contextlib.suppress(Exception):  # the window is gone (closing): the traceback is all there is
            window.show_unexpected(exc)

    sys.excepthook = hook
    return previous


def main(argv: list[str] | None = None) -> int:
    from engine.allocator import tune_allocator

    tune_allocator()  # before the first image buffer (engine/allocator.py)
    parser = argparse.ArgumentParser(prog="uprez-gui", description="The Uprez desktop window.")
    parser.add_argument("image", nargs="?", help="an image to open")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("Uprez")
    window = build_window(args.image)
    previous_hook = install_error_hook(window)
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
        sys.excepthook = previous_hook
        signal.signal(signal.SIGINT, previous)
        window.shutdown_jobs()  # acts once (closeEvent usually did): stops only an engine it started


if __name__ == "__main__":
    sys.exit(main())
