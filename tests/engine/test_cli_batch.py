"""Folder batches that stop part-way say what was written and what was not (issue 16 item 8)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from PIL import Image


def _folder(tmp_path, sample_image, names):
    folder = tmp_path / "in"
    folder.mkdir()
    for name in names:
        sample_image.resize((32, 32)).save(folder / name)
    return folder


def _cli(*args):
    return [sys.executable, "-m", "engine.cli", "upscale", *map(str, args)]


def test_a_bad_file_in_the_middle_is_named_with_what_was_written(tmp_path, sample_image, tiny_flux):
    folder = _folder(tmp_path, sample_image, ["a.png", "c.png"])
    (folder / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    out = tmp_path / "out"
    done = subprocess.run(_cli(folder, "-o", out, "--model", tiny_flux, "--steps", "2", "-q"),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr
    summary = done.stderr.strip().splitlines()[-1]
    assert "1 of 3 images could not be read (b.png)" in summary and "wrote 2 of 3 (a.png, c.png)" in summary, summary
    assert "not written: b.png" in summary
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "c.png"]


@pytest.mark.skipif(sys.platform == "win32", reason="sends SIGINT")
def test_ctrl_c_after_some_images_says_which_were_written(tmp_path, sample_image, tiny_flux):
    folder = _folder(tmp_path, sample_image, ["a.png", "b.png", "c.png"])
    out = tmp_path / "out"
    # Slow enough per image (two stages of 60 model calls) that Ctrl-C lands while the second one runs.
    process = subprocess.Popen(_cli(folder, "-o", out, "--model", tiny_flux, "--strength", "1", "--steps", "60",
                                    "--scale", "4", "-q"), stderr=subprocess.PIPE, text=True, env=dict(os.environ))
    lines = []
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        lines.append(line)
        if not line or line.startswith("wrote "):
            break
    time.sleep(0.5)
    process.send_signal(signal.SIGINT)
    rest = process.stderr.read()
    assert process.wait(60) == 130, "".join(lines) + rest
    assert "nothing was written" not in rest
    assert "cancelled; wrote 1 of 3 (a.png); not written: b.png, c.png" in rest, rest
    assert [p.name for p in out.iterdir()] == ["a.png"] and Image.open(out / "a.png").size == (128, 128)
