"""The built-in model: shipped weights through the normal loader, quality on an unseen photo, training loop."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from engine import upscale
from engine.backends.loader import load_backend
from engine.builtin.backend import WEIGHTS, WEIGHTS_FILE, BuiltinBackend, save_builtin
from engine.builtin.model import FlowSRNet, NetConfig
from engine.builtin.train import train
from engine.pixels import conventional_resize
from engine.testing.metrics import psnr

SAMPLE = Path(__file__).resolve().parents[1] / "engine" / "data" / "sample.jpg"  # in no training source


def test_shipped_weights_load_through_the_normal_loader_and_are_small():
    backend = load_backend("builtin", device="cpu")
    assert isinstance(backend, BuiltinBackend) and backend.latent_multiple == 2
    assert (WEIGHTS / WEIGHTS_FILE).stat().st_size <= 10 * 2**20


def _unseen_pair(factor: int) -> tuple[np.ndarray, np.ndarray]:
    """The bundled sample photo (no training source contains it): a centre crop and its bicubic downscale."""
    with Image.open(SAMPLE) as image:
        hr = image.convert("RGB").crop((128, 140, 384, 396))
    lr = hr.resize((hr.width // factor, hr.height // factor), Image.Resampling.BICUBIC)
    return np.asarray(hr), np.asarray(lr)


@pytest.mark.parametrize(("factor", "margin"), [(2, 0.8), (4, 0.5)])  # the bar on the eval split
def test_default_model_beats_bicubic_and_lanczos_on_an_unseen_photo(factor, margin):
    hr, lr = _unseen_pair(factor)
    ours = upscale(lr, scale=factor)  # no model named: the built-in one, at its default steps
    bicubic = np.asarray(Image.fromarray(lr).resize(hr.shape[1::-1], Image.Resampling.BICUBIC))
    lanczos = np.round(conventional_resize(lr.astype(np.float32) / 255, hr.shape[1::-1]) * 255).astype(np.uint8)
    assert psnr(lanczos, hr) > psnr(bicubic, hr)  # the baselines themselves are sane (measured: +0.5, +0.3 dB)
    assert psnr(ours, hr) > psnr(bicubic, hr) + margin  # measured: +2.8 dB at 2x, +2.1 dB at 4x
    assert psnr(ours, hr) > psnr(lanczos, hr)


def test_an_untrained_network_is_exactly_lanczos(tmp_path):
    folder = save_builtin(FlowSRNet(NetConfig(width=8, blocks=1)), tmp_path / "untrained", {"default_steps": 2})
    image = np.random.default_rng(0).random((21, 30, 3)).astype(np.float32)
    out = upscale(image, scale=2, model=str(folder))
    np.testing.assert_allclose(out, conventional_resize(image, (60, 42)), atol=1e-5)


def test_velocity_points_from_the_sample_to_the_prediction():
    net = FlowSRNet(NetConfig(width=8, blocks=1))
    backend = BuiltinBackend(net, {}, source="t", device=torch.device("cpu"), dtype=torch.float32)
    up = torch.rand(1, 3, 8, 8) * 2 - 1
    cond = backend.condition_stage(backend.encode_prompt("ignored"), up)
    x = torch.randn(1, 3, 8, 8)
    v = backend.velocity(x, 0.5, cond)
    torch.testing.assert_close(x - 0.5 * v, net(x, up, torch.tensor([0.5])))  # x0_hat = x - sigma v


def _smooth_images(count: int, size: int = 128) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:size, 0:size] / size
    return [np.stack([np.sin(x * rng.uniform(2, 9) + rng.uniform(0, 3)) * 0.5 + 0.5, y,
                      np.cos(y * rng.uniform(2, 9)) * 0.5 + 0.5], axis=2).astype(np.float32) for _ in range(count)]


def test_training_is_reproducible_and_resumes_where_it_stopped(tmp_path):
    config, images = NetConfig(width=8, blocks=1), _smooth_images(3)
    kwargs = {"batch": 2, "crop": 32, "lr": 1e-3, "seed": 5, "config": config, "checkpoint_every": 2,
              "images": images}
    straight = train(tmp_path / "straight", steps=4, **kwargs)
    train(tmp_path / "resumed", steps=2, **kwargs)
    resumed = train(tmp_path / "resumed", steps=4, **kwargs)
    for a, b in zip(straight.state_dict().values(), resumed.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b)
    log = (tmp_path / "resumed" / "loss.csv").read_text().splitlines()
    assert log[0] == "step,loss,lr,seconds" and [row.split(",")[0] for row in log[1:]] == ["1", "2", "3", "4"]
    assert Path(tmp_path / "resumed" / "ckpt.pt").is_file()
