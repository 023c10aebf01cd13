"""`uprez train-lora` on a tiny model, on the CPU: a few dozen steps on crops of the sample photo. The held-out
loss falls, the log and checkpoints are written, a resumed run ends exactly where an uninterrupted one does, and
the LoRA loads back with the apply path and changes the upscale."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from engine.api import upscale
from engine.cli import main
from engine.lora.apply import apply_loras
from engine.lora.files import read_lora
from engine.lora.options import TrainOptions
from engine.lora.spec import LoraSpec
from engine.lora.train import train_lora
from engine.settings import UpscaleSettings
from tests.conftest import SAMPLE


@pytest.fixture
def photos(tmp_path) -> Path:
    """Six different 150x150 crops of the sample photo: five to train on, one held out."""
    folder = tmp_path / "photos"
    folder.mkdir()
    with Image.open(SAMPLE) as image:
        image = image.convert("RGB")
        for i in range(6):
            left, top = (i % 3) * 150, (i // 3) * 150
            image.crop((left, top, left + 150, top + 150)).save(folder / f"photo{i}.png")
    return folder


def _tensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path))


def test_train_resume_and_apply(photos, tiny_model, tiny_backend, tmp_path):
    model = str(tiny_model("flux-schnell"))
    out = tmp_path / "run" / "upscale.safetensors"
    options = TrainOptions(model=model, photos=photos, out=out, steps=30, size=32, rank=8, learning_rate=3e-3,
                           val_every=15, save_every=15, device="cpu", pool=8, val_fraction=0.2)
    report = train_lora(options, progress=False)

    assert report.steps == 30 and len(report.losses) == 30
    assert report.end.loss < 0.97 * report.start.loss, (report.start, report.end)  # the held-out loss falls
    rows = list(csv.DictReader((tmp_path / "run" / "upscale.log.csv").open()))
    assert [r["step"] for r in rows] == [str(i) for i in range(31)]
    assert [r["step"] for r in rows if r["val_loss"]] == ["0", "15", "30"]
    assert sorted(p.name for p in (tmp_path / "run" / "upscale.checkpoints").iterdir()) == ["step-000015.pt"]
    lora = read_lora(out)
    assert lora.fits("flux")

    # Interrupted after step 15: the CLI picks up the checkpoint and ends on the same weights, bit for bit.
    first = _tensors(out)
    out.unlink()
    code = main(["train-lora", "--model", model, "--photos", str(photos), "--out", str(out), "--steps", "30",
                 "--size", "32", "--rank", "8", "--learning-rate", "3e-3", "--val-every", "15", "--save-every", "15",
                 "--device", "cpu", "--pool", "8"])
    assert code == 0
    resumed = _tensors(out)
    assert resumed.keys() == first.keys()
    assert all(torch.equal(resumed[k], first[k]) for k in first)

    # The trained file goes through the same path as anyone's LoRA, and changes the upscale.
    backend = tiny_backend("flux-schnell")
    with Image.open(photos / "photo0.png") as image:
        small = image.convert("RGB").resize((32, 32), Image.Resampling.LANCZOS)
    try:
        base = np.asarray(upscale(small, UpscaleSettings(scale=2, seed=0), backend=backend)).astype(np.int16)
        with_lora = np.asarray(upscale(small, UpscaleSettings(scale=2, seed=0, loras=(str(LoraSpec(str(out))),)),
                                       backend=backend)).astype(np.int16)
    finally:
        apply_loras(backend, [])
    assert np.abs(with_lora - base).mean() > 0.1


def test_train_refuses_bad_input(photos, tmp_path, tiny_model):
    with pytest.raises(Exception, match="needs at least 2"):
        one = tmp_path / "one"
        one.mkdir()
        (photos / "photo0.png").rename(one / "photo0.png")
        train_lora(TrainOptions(model=str(tiny_model("flux-schnell")), photos=one, out=tmp_path / "x.safetensors",
                                device="cpu"), progress=False)
    assert main(["train-lora", "--model", "builtin", "--photos", str(photos), "--out", str(tmp_path / "x.pt")]) == 2


@pytest.mark.parametrize(("tiny", "family"), [("z-image", "z-image"), ("qwen-image", "qwen-image"), ("sd3", "sd3"),
                                              ("flux2-klein", "flux2"), ("chroma", "chroma")])
def test_train_every_family(tiny, family, photos, tiny_model, tiny_backend, tmp_path):
    """Two steps with gradient checkpointing on each other family: the adapter trains through the family's own
    transformer call, and the file it writes is one that family's loader takes."""
    out = tmp_path / f"{tiny}.safetensors"
    report = train_lora(TrainOptions(model=str(tiny_model(tiny)), photos=photos, out=out, steps=2, size=32,
                                     val_every=2, save_every=2, device="cpu", pool=1, gradient_checkpointing=True),
                        progress=False)
    assert report.end.loss != report.start.loss
    assert read_lora(out).fits(family)
    backend = tiny_backend(tiny)
    try:
        apply_loras(backend, [LoraSpec(str(out))])
        assert len(backend.lora_slots.loaded) == 1
    finally:
        apply_loras(backend, [])
