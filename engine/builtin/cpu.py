"""Running a built-in network fast on the CPU, whatever its architecture (issue 21 item 4).

`CpuRunner(net)` calls any `net(x, up, sigma, ...) -> x0_hat` of (B, 3, H, W) images with:
- channels-last memory: oneDNN's convolutions run on NHWC without reordering every layer's input and output
  (measured 1.28x less CPU on the v1 network at 640x512);
- bfloat16 convolutions where the CPU has them in hardware (`fast_bf16`: AMX or AVX-512 BF16), through
  autocast, so the network's own float32 additions (its `up +` residual) stay float32; 1.4x less again with
  AMX. It changes the output within 0.05 dB PSNR on the eval photos (bench/cpu_net.py); `UPREZ_CPU_BF16=0`
  turns it off (the golden outputs are recorded without it, so they do not depend on the CPU);
- as many threads as the process may use (its CPU affinity and cgroup quota), not the host's core count.
`compiled(runner)` (for a long-lived server) additionally fuses convolutions with their activations through
torch.compile; it is off: on this 2-core machine it did not pay for its first call (bench/cpu_net.py).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from contextlib import nullcontext
from functools import cache
from pathlib import Path

import torch
from torch import nn

BF16_SWITCH = "UPREZ_CPU_BF16"  # "0" keeps float32 convolutions everywhere


def fast_bf16() -> bool:
    """Whether to run bfloat16 convolutions: this CPU computes them in hardware (AMX tiles or AVX-512 BF16,
    from torch's cpuinfo probe; x86 only: elsewhere, or without them, bfloat16 is emulated and slower than
    float32), and `UPREZ_CPU_BF16` is not "0"."""
    return os.environ.get(BF16_SWITCH, "1") != "0" and _bf16_hardware()


@cache
def _bf16_hardware() -> bool:
    probes = [getattr(torch.cpu, name, None) for name in ("_is_amx_tile_supported", "_is_avx512_bf16_supported")]
    return any(probe is not None and probe() for probe in probes)


def usable_cpus() -> int:
    """CPUs this process may run on: its affinity mask, capped by a cgroup v2 CPU quota where there is one."""
    count = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            count = min(count, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return max(1, count)


def fit_threads() -> int:
    """Torch's intra-op threads to at most the usable CPUs (torch counts the host's cores: too many in a
    container, where threads then wait on each other). Returns the count set."""
    threads = min(torch.get_num_threads(), usable_cpus())
    if threads != torch.get_num_threads():
        torch.set_num_threads(threads)
    return threads


class CpuRunner:
    """`net(x, up, sigma, ...)` in channels-last, with bf16 convolutions where `bf16`; float32 contiguous out."""

    def __init__(self, net: nn.Module, *, bf16: bool | None = None) -> None:
        self.net = net.to(memory_format=torch.channels_last)
        self.bf16 = fast_bf16() if bf16 is None else bf16
        self.call: Callable[..., torch.Tensor] = self.net
        fit_threads()

    def __call__(self, *args: torch.Tensor | None) -> torch.Tensor:
        """The network on `args` (images in channels-last; sigma, step sizes and absent inputs as they are)."""
        args = tuple(t.contiguous(memory_format=torch.channels_last) if t is not None and t.ndim == 4 else t
                     for t in args)
        autocast = torch.autocast("cpu", dtype=torch.bfloat16) if self.bf16 else nullcontext()
        with torch.no_grad(), autocast:
            out = self.call(*args)
        return out.float().contiguous()


def compiled(runner: CpuRunner) -> CpuRunner:
    """The runner with its network through torch.compile (conv + activation fusion): pays only in a process
    that runs it many times, after a first call of tens of seconds."""
    runner.call = torch.compile(runner.net, dynamic=True)
    return runner


def on_cpu(net: nn.Module, device: torch.device, dtype: torch.dtype) -> Callable[..., torch.Tensor]:
    """What a built-in backend calls its network through: the CPU runner for a float32 network on the CPU,
    the network itself elsewhere (a GPU, or a dtype the user chose)."""
    if device.type != "cpu" or dtype != torch.float32:
        return net
    return CpuRunner(net)
