"""The protocol facts (plugin/uprez_client/protocol.py) are written down once, and every side uses that copy."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PROTOCOL = ROOT / "plugin" / "uprez_client" / "protocol.py"
SOURCES = ("engine", "plugin", "ui", "installers", "bench", "scripts")
FACTS = ("PRESETS", "MAX_SCALE", "MAX_SEED", "MASK_CONTEXT", "DEFAULT_PORT", "DEFAULT_HOST", "DEFAULT_URL",
         "PNG_SIGNATURE", "TIFF_SIGNATURES", "TOKEN_FILE", "ENGINE_FILE", "BRIDGE_FILE")


def _sources() -> list[Path]:
    return [path for folder in SOURCES for path in (ROOT / folder).rglob("*.py")
            if ".venv" not in path.parts and "__pycache__" not in path.parts]


@pytest.mark.parametrize("name", FACTS)
def test_each_fact_is_assigned_only_in_the_protocol_module(name):
    assigned = re.compile(rf"^\s*{name}\s*(:[^=]*)?=[^=]", re.MULTILINE)
    where = [str(path.relative_to(ROOT)) for path in _sources() if assigned.search(path.read_text(encoding="utf-8"))]
    assert where == [str(PROTOCOL.relative_to(ROOT))]


@pytest.mark.parametrize(("what", "pattern"), [
    ("the PNG signature", r"\\x89PNG"),
    ("the TIFF signatures", r"b\"II\+\\x00\""),  # Krita's profile reader takes classic TIFF only
    ("the default port", r"=\s*8742\b"),
    ("round half up", r"floor\([^)]*\+ 0\.5\)"),
    ("the config folder override", r"get\(\"UPREZ_CONFIG_DIR\""),
])
def test_no_second_copy_of_a_literal(what, pattern):
    found = re.compile(pattern)
    where = [str(path.relative_to(ROOT)) for path in _sources() if found.search(path.read_text(encoding="utf-8"))]
    assert set(where) <= {str(PROTOCOL.relative_to(ROOT))}, what


def test_every_side_agrees_with_the_protocol():
    from engine.api import MASK_CONTEXT
    from engine.server.config import DEFAULT_PORT, uprez_config_dir
    from engine.settings import PRESETS
    from engine.stages import MAX_SCALE, output_size
    from installers.locations import Host, config_dir
    from plugin.uprez_client import options, protocol, regions

    assert MASK_CONTEXT == regions.CONTEXT_PX == protocol.MASK_CONTEXT
    assert PRESETS == options.PRESETS == protocol.PRESETS
    assert MAX_SCALE == options.MAX_SCALE == protocol.MAX_SCALE
    assert DEFAULT_PORT == protocol.DEFAULT_PORT
    assert str(uprez_config_dir()) == protocol.config_dir()
    for system in ("linux", "darwin", "win32"):
        host = Host(system, Path("/home/a"), {})
        assert config_dir(host) == Path(protocol.config_dir(system, {}, "/home/a"))
    # Halves go up everywhere (Python's round() would give 2 for 2.5 and 4 for 3.5).
    assert output_size(5, 7, 0.5) == regions.scaled_size(5, 7, 0.5) == (3, 4)
