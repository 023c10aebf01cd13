"""The GIMP bridge's tests: its pure package and the client on sys.path as GIMP's Python would have them,
and a real engine with the built-in model (fast, no weights) on 127.0.0.1."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PLUGIN_DIR = ROOT / "plugin" / "gimp" / "uprez-upscale"
# Top-level `uprez_client` (as in the plug-in), not `plugin.uprez_client`: the two would be separate modules
# with separate exception classes.
for folder in (str(PLUGIN_DIR), str(ROOT / "plugin")):
    if folder not in sys.path:
        sys.path.insert(0, folder)


@pytest.fixture(scope="session")
def builtin_engine(config_dir):
    """A real `uprez serve` on an ephemeral loopback port with the built-in model; stopped at the end."""
    from engine.server import ServerConfig, start_in_thread

    server = start_in_thread(ServerConfig(host="127.0.0.1", port=0, model="builtin", device="cpu", queue_size=4,
                                          config_dir=config_dir))
    yield server
    server.stop()


@pytest.fixture
def gimp_client(builtin_engine):
    """The client the plug-in builds: it finds the token in UPREZ_CONFIG_DIR (set by `config_dir`)."""
    from uprez_client import Client

    return Client(builtin_engine.url)


def pytest_terminal_summary(terminalreporter) -> None:
    """Which GIMP versions the plug-in ran in, with each run's checks and time."""
    from test_gimp_in_chroots import SEEN

    for suite, line in sorted(SEEN.items()):
        terminalreporter.write_line(f"ran in GIMP ({suite} chroot): {line}")
