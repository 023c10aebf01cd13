"""kritarc edits touch one key: setting and then removing it gives back the file byte for byte."""

from __future__ import annotations

import pytest

from installers import kritarc


@pytest.mark.parametrize("original", [
    "[General]\nShowCanvasMessages=false\n",  # no [python] section yet: the installer adds it, and takes it away
    "[General]\nx=1\n\n[python]\nenable_scripter=true\n\n[MainWindow]\nState=AAAA\n",
    "[python]\nenable_scripter=true\n",
])
def test_set_then_remove_gives_the_original_bytes(tmp_path, original):
    path = tmp_path / "kritarc"
    path.write_text(original)
    kritarc.set_value(path, "python", "enable_uprez_krita", "true")
    assert kritarc.get(path, "python", "enable_uprez_krita") == "true"
    assert path.read_text().startswith(original.split("[python]")[0].rstrip("\n"))
    kritarc.set_value(path, "python", "enable_uprez_krita", None)
    assert path.read_text() == original
