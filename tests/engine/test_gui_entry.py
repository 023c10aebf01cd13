"""`uprez-gui` without PyQt6 says what to install, like `uprez gui` (issue 16 item 9)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.parametrize("command", [["uprez-gui"], ["uprez", "gui"]])
def test_the_window_commands_without_pyqt6_say_what_to_install(command, tmp_path):
    script = Path(sys.executable).parent / command[0]
    assert script.exists(), f"{script} is not installed; run scripts/setup.sh"
    # A site hook that hides PyQt6, as on an install without the gui extra.
    (tmp_path / "sitecustomize.py").write_text("import sys\nsys.modules['PyQt6'] = None\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")])))
    done = subprocess.run([str(script), *command[1:]], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr and "pip install 'uprez[gui]'" in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
