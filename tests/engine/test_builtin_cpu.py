"""engine.builtin.cpu: the built-in network on the CPU in channels-last and, where the CPU has it, bf16 (issue 21)."""

from __future__ import annotations

import copy
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from engine import upscale
from engine.backends.loader import load_backend
from engine.builtin import data
from engine.builtin.cpu import BF16_SWITCH, CpuRunner, fast_bf16, fit_threads, on_cpu, usable_cpus

SAMPLE = "engine/data/sample.jpg"


@pytest.fixture(scope="module")
def backend():
    return load_backend("builtin", device="cpu")


def _inputs(height: int = 96, width: int = 128) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    x, up = (torch.rand(1, 3, height, width, generator=generator) * 2 - 1 for _ in range(2))
    return x, up, torch.full((1,), 0.7)


def test_channels_last_alone_gives_the_networks_own_output(backend):
    x, up, sigma = _inputs()
    with torch.no_grad():
        want = backend.net(x, up, sigma)
    got = CpuRunner(copy.deepcopy(backend.net), bf16=False)(x, up, sigma)
    assert got.dtype == torch.float32 and got.is_contiguous()
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)


def test_bf16_changes_the_upscale_by_less_than_005_db(backend):
    """On a real photo, 2x from its bicubic downscale as the eval photos are (data.eval_pair): PSNR against the
    original with bf16 convolutions within 0.05 dB of float32's (bench/cpu_net.py: 0.006 dB at most on the
    eval photos). bf16 is forced, so this runs (emulated, slower) on CPUs without it too."""
    with Image.open(SAMPLE) as image:
        hr = np.asarray(image.convert("RGB").crop((0, 0, 256, 192)), dtype=np.float32) / 255.0
    hr, lr = data.eval_pair(hr, 2)
    plain = upscale(lr, scale=2, backend=backend, seed=0)  # bf16 off in the suite (tests/conftest.py)
    fast = copy.copy(backend)
    fast.run_net = lambda net: CpuRunner(copy.deepcopy(net), bf16=True)
    bf16 = upscale(lr, scale=2, backend=fast, seed=0)
    assert not np.array_equal(plain, bf16)  # bf16 did run
    assert abs(data.psnr(bf16, hr) - data.psnr(plain, hr)) < 0.05
    assert data.psnr(plain, hr) > data.psnr(np.asarray(Image.fromarray(np.uint8(lr * 255 + 0.5)).resize(
        (hr.shape[1], hr.shape[0]), Image.Resampling.BICUBIC), dtype=np.float32) / 255.0, hr)  # the model did run


def test_bf16_only_where_the_hardware_has_it_and_the_switch_allows(monkeypatch):
    cpuinfo = Path("/proc/cpuinfo")
    flags = cpuinfo.read_text().split() if cpuinfo.exists() else []
    monkeypatch.setenv(BF16_SWITCH, "1")
    if flags:
        assert fast_bf16() == ("amx_bf16" in flags or "avx512_bf16" in flags)
    monkeypatch.setenv(BF16_SWITCH, "0")
    assert fast_bf16() is False
    assert CpuRunner(torch.nn.Identity()).bf16 is False


def test_threads_fit_the_cpus_this_process_may_use():
    assert 1 <= usable_cpus() <= (os.cpu_count() or 1)
    before = torch.get_num_threads()
    try:
        assert fit_threads() == torch.get_num_threads() <= usable_cpus()
    finally:
        torch.set_num_threads(before)


def test_the_built_in_backend_runs_its_network_through_the_runner_on_the_cpu_only(backend):
    runner = backend.run_net(backend.net)
    assert isinstance(runner, CpuRunner) and runner.net is backend.net
    net = torch.nn.Identity()
    assert on_cpu(net, torch.device("cpu"), torch.bfloat16) is net  # a dtype the user chose stays as it is
    assert on_cpu(net, torch.device("cuda"), torch.float32) is net
