"""The built-in model: shipped weights through the normal loader, quality on an unseen photo, training loop."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from engine import upscale
from engine.backends.loader import load_backend
from engine.builtin import block_grid
from engine.builtin.backend import WEIGHTS, WEIGHTS_FILE, BuiltinBackend, save_builtin, step_size
from engine.builtin.degradations import jpeg
from engine.builtin.detail import lora_state, merged, with_lora
from engine.builtin.metrics import block_grid_ratio
from engine.builtin.model import FlowSRNet, NetConfig
from engine.builtin.train import initial_weights, train
from engine.builtin.train_detail import export as export_detail
from engine.builtin.train_detail import train_detail
from engine.pixels import conventional_resize
from engine.testing.metrics import psnr

SAMPLE = Path(__file__).resolve().parents[2] / "engine" / "data" / "sample.jpg"  # in no training source


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
    assert psnr(ours, hr) > psnr(bicubic, hr) + margin  # measured: v1 +2.8 / +2.1 dB; v2 +2.2 / +2.0 dB
    assert psnr(ours, hr) > psnr(lanczos, hr)


def _jpeg60_pair() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The unseen sample crop, its bicubic /2, and that saved as JPEG quality 60 (the bench's jpeg60 input)."""
    hr, lr = _unseen_pair(2)
    return hr, lr, np.round(jpeg(lr.astype(np.float32) / 255, 60) * 255).astype(np.uint8)


def test_shipped_flow_map_gives_consistent_results_at_1_2_and_4_steps():
    _, lr, _ = _jpeg60_pair()
    one, two, four = (upscale(lr, scale=2, steps=n) for n in (1, 2, 4))
    # measured: v2 47.2 dB between 1 and 4 steps (stop 14's 44.6); v1 (no step input) 37.9 dB
    assert psnr(one, four) > 42.0 and psnr(one, two) > 42.0


def test_shipped_model_removes_the_jpeg_block_grid_instead_of_sharpening_it():
    hr, _, jpeg60 = _jpeg60_pair()
    bicubic = np.asarray(Image.fromarray(jpeg60).resize(hr.shape[1::-1], Image.Resampling.BICUBIC))
    lanczos = conventional_resize(jpeg60.astype(np.float32) / 255, hr.shape[1::-1])
    ours = upscale(jpeg60, scale=2)
    # measured: Lanczos grid 1.16, v1 1.29 (it sharpened the grid), v2 1.06 (stop 14's 1.11); PSNR over bicubic
    # v1 +0.34, v2 +0.93 (detailed: grid 1.07, +0.90)
    assert block_grid_ratio(ours, 2) < min(1.2, block_grid_ratio(lanczos, 2))
    assert psnr(ours, hr) > psnr(bicubic, hr) + 0.5
    detailed = upscale(jpeg60, scale=2, preset="creative")  # the detailed mode: same bars, the issue's
    assert not np.array_equal(detailed, ours)
    assert block_grid_ratio(detailed, 2) <= 1.2 and psnr(detailed, hr) >= psnr(bicubic, hr)


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


def _jpeg_images(count: int) -> list[np.ndarray]:
    """Crops of the sample photo (a web JPEG: its block grid is there for the grid detector to find)."""
    with Image.open(SAMPLE) as image:
        photo = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    return [photo[40 * n : 40 * n + 128, 48 * n : 48 * n + 160] for n in range(count)]


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


# --- v2: the flow map's step input, the detailed mode (issue 15) ---


def test_step_size_is_the_gap_to_the_next_sigma_of_the_stage():
    assert step_size(1.0, (1.0, 0.5, 0.0)) == 0.5 and step_size(0.5, (1.0, 0.5, 0.0)) == 0.5
    assert step_size(0.75, (1.0, 0.75, 0.5, 0.25, 0.0)) == pytest.approx(0.25)
    assert step_size(1.0, (1.0, 0.0)) == 1.0
    assert step_size(0.6, ()) == 0.6  # no schedule: one jump to the end
    assert step_size(0.3, (1.0, 0.5, 0.0)) == 0.3  # not on the schedule: the same


def test_a_v2_network_starts_as_the_v1_network_it_extends(tmp_path):
    v1 = FlowSRNet(NetConfig(width=8, blocks=2))
    for p in v1.parameters():
        torch.nn.init.normal_(p, std=0.1)
    folder = save_builtin(v1, tmp_path / "v1", {})
    v2 = FlowSRNet(NetConfig(width=8, blocks=2, step_input=True, grid_input=True))
    initial_weights(v2, folder)
    x, up = torch.randn(2, 3, 8, 8), torch.rand(2, 3, 8, 8)
    sigma = torch.tensor([1.0, 0.5])
    grid = block_grid.positions(8, 8, (3, 6))  # the block-grid input starts with zero weights too
    for step in (None, torch.tensor([1.0, 0.25]), torch.zeros(2)):
        torch.testing.assert_close(v2(x, up, sigma, step), v1(x, up, sigma))
        torch.testing.assert_close(v2(x, up, sigma, step, grid), v1(x, up, sigma))


def test_the_backend_asks_the_network_for_the_stages_jump(tmp_path):
    net = FlowSRNet(NetConfig(width=8, blocks=1, step_input=True))
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.2)
    backend = BuiltinBackend(net, {}, source="t", device=torch.device("cpu"), dtype=torch.float32)
    up, x = torch.rand(1, 3, 8, 8) * 2 - 1, torch.randn(1, 3, 8, 8)
    cond = backend.condition_stage(backend.encode_prompt(""), up, (1.0, 0.5, 0.0))
    v = backend.velocity(x, 1.0, cond)
    torch.testing.assert_close(x - v, net(x, up, torch.tensor([1.0]), torch.tensor([0.5])))
    assert not torch.allclose(x - v, net(x, up, torch.tensor([1.0]), torch.tensor([1.0])))


@pytest.mark.parametrize("bf16", [False, True], ids=["float32", "bf16"])  # bf16: how the shipped v2 was trained
def test_training_a_flow_map_from_v1_weights_is_reproducible_and_resumes(tmp_path, bf16):
    config, images = NetConfig(width=8, blocks=1, step_input=True, grid_input=True), _jpeg_images(3)
    init = save_builtin(FlowSRNet(NetConfig(width=8, blocks=1)), tmp_path / "v1", {})
    kwargs = {"batch": 2, "crop": 32, "lr": 1e-3, "seed": 3, "config": config, "checkpoint_every": 3,
              "images": images, "init": init, "bf16": bf16}
    straight = train(tmp_path / "straight", steps=6, **kwargs)
    train(tmp_path / "resumed", steps=3, **kwargs)
    resumed = train(tmp_path / "resumed", steps=6, **kwargs)
    for a, b in zip(straight.state_dict().values(), resumed.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b)
    assert any(float(p.detach().abs().sum()) > 0 for p in straight.step_embed[2].parameters())  # d is being learnt
    assert straight.head.weight[:, -block_grid.FEATURES :].abs().sum() > 0  # and so is the block-grid input


def test_detail_weights_fold_into_a_plain_network_exactly():
    net = FlowSRNet(NetConfig(width=8, blocks=2, step_input=True))
    adapted, trainable = with_lora(net)
    for p in trainable:
        torch.nn.init.normal_(p, std=0.1)
    extra = lora_state(adapted)
    folded = merged(net, extra, 1.0)
    assert all(type(m) in (torch.nn.Conv2d, torch.nn.Linear, torch.nn.SiLU, torch.nn.Sequential, torch.nn.ModuleList,
                           FlowSRNet, type(net.blocks[0])) for m in folded.modules())
    x, up, sigma = torch.randn(1, 3, 8, 8), torch.rand(1, 3, 8, 8), torch.tensor([0.7])
    torch.testing.assert_close(folded(x, up, sigma), adapted(x, up, sigma), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(merged(net, extra, 0.0)(x, up, sigma), net(x, up, sigma))


@pytest.mark.parametrize("bf16", [False, True], ids=["float32", "bf16"])
def test_detail_training_resumes_and_exports_both_modes_in_one_file(tmp_path, bf16):
    base = save_builtin(FlowSRNet(NetConfig(width=8, blocks=1, step_input=True)), tmp_path / "base",
                        {"default_steps": 1})
    kwargs = {"batch": 2, "crop": 32, "lr": 1e-3, "seed": 2, "checkpoint_every": 2, "images": _smooth_images(3),
              "bf16": bf16}
    straight = train_detail(base, tmp_path / "straight", steps=4, **kwargs)
    train_detail(base, tmp_path / "resumed", steps=2, **kwargs)
    resumed = train_detail(base, tmp_path / "resumed", steps=4, **kwargs)
    for a, b in zip(straight.state_dict().values(), resumed.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b)
    folder = export_detail(base, resumed, tmp_path / "both", {"steps": 4})
    image = np.random.default_rng(0).random((16, 20, 3)).astype(np.float32)
    faithful = upscale(image, scale=2, model=str(folder))
    assert np.array_equal(faithful, upscale(image, scale=2, model=str(base)))  # the faithful weights are untouched
    detailed = upscale(image, scale=2, model=str(folder), preset="creative")
    assert not np.array_equal(detailed, faithful)
    assert np.array_equal(upscale(image, scale=2, model=str(folder), cfg_scale=0.0), faithful)
