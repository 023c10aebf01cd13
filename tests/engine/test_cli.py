"""`uprez upscale` end to end: real files, the real loader, a tiny random FLUX model."""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from engine.cli import main


def run(*args: str) -> int:
    return main(["upscale", *map(str, args)])


def test_scale_two_writes_exactly_twice_the_size(tiny_model, sample_png, tmp_path):
    out = tmp_path / "out.png"
    assert run(sample_png, "-o", out, "--scale", "2", "--model", tiny_model("flux-dev"), "-q") == 0
    assert Image.open(out).size == (128, 150)


def test_scale_four_runs_two_stages(tiny_model, sample_png, tmp_path, capsys):
    out = tmp_path / "out.png"
    assert run(sample_png, "-o", out, "--scale", "4", "--model", tiny_model("flux-dev")) == 0
    assert Image.open(out).size == (256, 300)
    assert "stage 2/2" in capsys.readouterr().err


def test_same_seed_identical_bytes(tiny_model, sample_png, tmp_path):
    outs = [tmp_path / f"out{i}.png" for i in range(3)]
    for out, seed in zip(outs, ("5", "5", "6"), strict=True):
        assert run(sample_png, "-o", out, "--model", tiny_model("flux-dev"), "--seed", seed, "-q") == 0
    assert outs[0].read_bytes() == outs[1].read_bytes()
    assert outs[0].read_bytes() != outs[2].read_bytes()


def test_folder_in_folder_out(tiny_model, sample_image, tmp_path):
    src, dst = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    sample_image.save(src / "a.png")
    sample_image.crop((0, 0, 40, 30)).save(src / "b.jpg")
    (src / "notes.txt").write_text("not an image")
    assert run(src, "-o", dst, "--model", tiny_model("flux-dev"), "-q") == 0
    assert Image.open(dst / "a.png").size == (128, 150)
    assert Image.open(dst / "b.jpg").size == (80, 60)
    assert sorted(p.name for p in dst.iterdir()) == ["a.png", "b.jpg"]


def test_sixteen_bit_png_stays_sixteen_bit(tiny_model, tmp_path):
    from engine.imagefile import read_image, write_image

    rng = np.random.default_rng(0)
    src, out = tmp_path / "deep.png", tmp_path / "deep-2x.png"
    write_image(src, rng.integers(0, 65536, (24, 20, 4), dtype=np.uint16))
    assert run(src, "-o", out, "--model", tiny_model("flux-dev"), "-q") == 0
    result = read_image(out)
    assert result.dtype == np.uint16 and result.shape == (48, 40, 4)


# -- bad input: a message that says what to do, a non-zero exit, and no output file -----------------

def _unknown_family_folder(tmp_path):
    folder = tmp_path / "sdxl"
    folder.mkdir()
    (folder / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionXLPipeline"}))
    return folder


BAD_CASES = {
    "missing model": (lambda t, m, p: [p, "--model", t / "no-such-model"], "model not found"),
    "unreadable image": (lambda t, m, p: [_garbage(t), "--model", m], "cannot read"),
    "missing image": (lambda t, m, p: [t / "nope.png", "--model", m], "input not found"),
    "unknown family": (lambda t, m, p: [p, "--model", _unknown_family_folder(t)], "StableDiffusionXLPipeline"),
    "folder without index": (lambda t, m, p: [p, "--model", t], "no model_index.json"),
    "scale one": (lambda t, m, p: [p, "--model", m, "--scale", "1"], "scale must be more than 1"),
    "scale negative": (lambda t, m, p: [p, "--model", m, "--scale", "-2"], "scale must be more than 1"),
    "too large": (lambda t, m, p: [p, "--model", m, "--scale", "8", "--max-memory", "0.0001"], "needs about"),
    "bad strength": (lambda t, m, p: [p, "--model", m, "--strength", "2"], "strength must be between 0 and 1"),
    "bad device": (lambda t, m, p: [p, "--model", m, "--device", "cuda"], "no CUDA GPU"),
    "tiny tile": (lambda t, m, p: [p, "--model", m, "--tile-size", "10"], "tile_size must be a whole number"),
    "overlap over half": (lambda t, m, p: [p, "--model", m, "--tile-size", "128", "--tile-overlap", "100"],
                          "at most half of tile_size"),
    "feather without mask": (lambda t, m, p: [p, "--model", m, "--feather", "2"], "--feather needs --mask"),
    "guidance weight over 1": (lambda t, m, p: [p, "--model", m, "--skip-residual", "2"],
                               "skip_residual must be a weight between 0 (off) and 1"),
}


def _garbage(tmp_path):
    path = tmp_path / "broken.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(64))
    return path


@pytest.mark.parametrize("case", list(BAD_CASES))
def test_bad_input_gets_a_message_a_nonzero_exit_and_no_output(case, tiny_model, sample_png, tmp_path, capsys):
    make_args, message = BAD_CASES[case]
    out = tmp_path / "out.png"
    code = run(*make_args(tmp_path, tiny_model("flux-dev"), sample_png), "-o", out, "-q")
    err = capsys.readouterr().err
    assert code != 0
    assert message in err
    assert "Traceback" not in err
    assert not out.exists()


def test_existing_output_is_not_overwritten_without_asking(tiny_model, sample_png, tmp_path, capsys):
    out = tmp_path / "out.png"
    out.write_bytes(b"precious")
    assert run(sample_png, "-o", out, "--model", tiny_model("flux-dev"), "-q") != 0
    assert "--overwrite" in capsys.readouterr().err and out.read_bytes() == b"precious"
    assert run(sample_png, "-o", out, "--model", tiny_model("flux-dev"), "-q", "--overwrite") == 0
    assert Image.open(out).size == (128, 150)


def test_the_input_is_never_written_over_even_with_overwrite(tiny_model, sample_png, capsys):
    before = sample_png.read_bytes()
    assert run(sample_png, "-o", sample_png, "--model", tiny_model("flux-dev"), "--overwrite", "-q") != 0
    assert "its own input" in capsys.readouterr().err and sample_png.read_bytes() == before


def _uprez_command() -> list[str]:
    script = shutil.which("uprez")
    return [script] if script else [sys.executable, "-m", "engine.cli"]


def test_ctrl_c_cancels_cleanly_and_writes_nothing(tiny_model, sample_image, tmp_path):
    src, out = tmp_path / "big.png", tmp_path / "out.png"
    sample_image.resize((256, 300)).save(src)
    # Long enough (200 steps from sigma 1) that the interrupt lands mid-run.
    proc = subprocess.Popen([*_uprez_command(), "upscale", str(src), "-o", str(out), "--model",
                             str(tiny_model("flux-dev")), "--strength", "1", "--steps", "200"],
                            stderr=subprocess.PIPE, text=True)
    seen = ""
    deadline = time.monotonic() + 120
    while "step" not in seen and time.monotonic() < deadline:
        seen += proc.stderr.read(1)
    proc.send_signal(signal.SIGINT)
    rest = proc.communicate(timeout=120)[1]
    assert proc.returncode == 130, seen + rest
    assert "cancelled; nothing was written" in rest
    assert not out.exists() and not list(tmp_path.glob(".uprez-*"))


def test_mask_keeps_the_outside_conventional_and_region_only_gives_alpha(tiny_model, tmp_path):
    from engine.imagefile import read_image
    from engine.pixels import conventional_resize, mask_resize

    rng = np.random.default_rng(4)
    src, mask_path = tmp_path / "in.png", tmp_path / "mask.png"
    image = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    Image.fromarray(image).save(src)
    mask = np.zeros((32, 32), np.uint8)
    mask[8:24, 8:24] = 255
    Image.fromarray(mask).convert("RGB").save(mask_path)  # a mask saved in colour still works
    out, region = tmp_path / "out.png", tmp_path / "region.png"
    model = tiny_model("flux-dev")
    assert run(src, "-o", out, "--model", model, "--mask", mask_path, "-q") == 0
    assert run(src, "-o", region, "--model", model, "--mask", mask_path, "--region-only", "-q") == 0
    weight = mask_resize(mask.astype(np.float32) / 255, (64, 64))
    conventional = np.round(conventional_resize(image.astype(np.float32) / 255, (64, 64)) * 255).astype(np.uint8)
    result = read_image(out)
    assert np.array_equal(result[weight == 0], conventional[weight == 0])
    assert not np.array_equal(result[weight == 1], conventional[weight == 1])
    assert read_image(region).shape == (64, 64, 4)
    assert np.array_equal(read_image(region)[:, :, 3], np.round(weight * 255).astype(np.uint8))


def test_outputs_get_the_usual_permissions_and_a_replaced_file_keeps_its_own(tiny_model, sample_png, tmp_path):
    out = tmp_path / "out.png"
    previous = os.umask(0o022)
    try:
        assert run(sample_png, "-o", out, "--model", tiny_model("flux-dev"), "-q") == 0
        assert stat.S_IMODE(out.stat().st_mode) == 0o644  # not mkstemp's 0600
        out.chmod(0o640)
        assert run(sample_png, "-o", out, "--model", tiny_model("flux-dev"), "-q", "--overwrite") == 0
        assert stat.S_IMODE(out.stat().st_mode) == 0o640
    finally:
        os.umask(previous)
