"""Desktop-window tests: real PyQt6 widgets offscreen, driven against a real engine with the built-in model."""

from __future__ import annotations

import os
from pathlib import Path

# Before anything loads Qt: no display here, and none needed.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

from plugin.uprez_client import Client  # noqa: E402

SAMPLE = Path(__file__).resolve().parents[2] / "engine" / "data" / "sample.jpg"


@pytest.fixture(scope="session")
def engine(start_server):
    """One engine for the window tests: built-in model by default; the tiny FLUX folder is listed too."""
    return start_server(model="builtin")


@pytest.fixture
def engine_client(engine) -> Client:
    return Client(engine.url)


class Answers:
    """Stands in for the person answering the window's yes/no questions (a modal box would block the test)."""

    def __init__(self) -> None:
        self.reply = True
        self.asked: list[str] = []

    def __call__(self, question: str) -> bool:
        self.asked.append(question)
        return self.reply


@pytest.fixture
def make_window(qtbot, engine, monkeypatch):
    """`make_window(settings=None, connect=True)` -> a shown MainWindow connected to the test engine."""
    from ui.main_window import MainWindow
    from ui.settings_store import DesktopSettings

    monkeypatch.setenv("UPREZ_URL", engine.url)  # the window finds it the way it finds any engine
    windows = []

    def make(settings: DesktopSettings | None = None, connect: bool = True) -> MainWindow:
        window = MainWindow(settings=settings if settings is not None else DesktopSettings())
        window.ask = Answers()
        qtbot.addWidget(window)
        window.resize(1100, 760)
        window.show()
        windows.append(window)
        if connect:
            window.connect_engine()
            qtbot.waitUntil(lambda: window.client is not None, timeout=15000)
        return window

    yield make
    for window in windows:
        window.ask.reply = True
        window.close()


def _write_photo(path: Path, width: int = 96, height: int = 80, alpha: bool = False) -> np.ndarray:
    """A small photo-like test image (the bundled sample, resized), written as PNG; returns its pixels."""
    with Image.open(SAMPLE) as image:
        picture = image.convert("RGB").resize((width, height), Image.Resampling.LANCZOS)
    if alpha:
        picture.putalpha(Image.linear_gradient("L").resize((width, height)))
    picture.save(path)
    return np.asarray(picture)


@pytest.fixture
def write_photo():
    """`write_photo(path, width=96, height=80, alpha=False) -> pixels`."""
    return _write_photo
