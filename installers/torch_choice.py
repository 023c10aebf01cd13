"""Which torch build suits this machine: NVIDIA CUDA, AMD ROCm, Apple MPS or the CPU.

A bare `pip install torch` gets a multi-GB CUDA build on Linux even without a GPU, and no ROCm build ever,
so the build is chosen here and fetched from PyTorch's own index for that build.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

from .locations import Host

TORCH_VERSION = "2.13.0"  # the version the engine is tested with (scripts/setup.sh pins the same)
INDEX = "https://download.pytorch.org/whl/"
# PyTorch publishes one wheel per CUDA runtime; a driver runs any runtime up to its own CUDA version.
CUDA_BUILDS = (((13, 0), "cu130"), ((12, 8), "cu128"), ((12, 6), "cu126"))
ROCM_BUILD = "rocm6.4"
CHOICES = ("cpu", "cuda", "rocm", "mps")

Run = Callable[[Sequence[str]], Optional[str]]


def run_quietly(command: Sequence[str]) -> str | None:
    """A tool's output, or None when it is missing, fails or hangs (a broken driver must not stop the install)."""
    try:
        done = subprocess.run(list(command), capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


@dataclass(frozen=True)
class TorchBuild:
    """The torch to install: `kind` is one of CHOICES; `index` None means PyPI's default wheel."""

    kind: str
    index: str | None
    reason: str

    def pip_args(self, version: str = TORCH_VERSION) -> list:
        args = [f"torch=={version}"]
        return args + ["--index-url", self.index] if self.index else args


def _cuda_version(nvidia_smi_output: str) -> tuple | None:
    match = re.search(r"CUDA Version:\s*(\d+)\.(\d+)", nvidia_smi_output)
    return (int(match.group(1)), int(match.group(2))) if match else None


def _cuda_build(version: tuple | None) -> str:
    if version is not None:
        for needed, build in CUDA_BUILDS:
            if version >= needed:
                return build
    return CUDA_BUILDS[-1][1]


def choose(host: Host, wanted: str = "auto", run: Run = run_quietly,
           which: Callable[[str], str | None] = shutil.which, index: str | None = None) -> TorchBuild:
    """The build `wanted` (auto = guess from the GPU tools found); `index` overrides the wheel index."""
    if wanted not in ("auto", *CHOICES):
        raise ValueError(f"--torch must be auto, {', '.join(CHOICES)}; got {wanted!r}")
    smi = run(["nvidia-smi"]) if wanted in ("auto", "cuda") and which("nvidia-smi") else None
    if host.system == "darwin":
        # macOS wheels on PyPI carry MPS (Apple silicon) and the CPU; PyTorch's CPU/CUDA indexes have none.
        if wanted in ("cuda", "rocm"):
            raise ValueError(f"--torch {wanted} is not available on macOS; use mps or cpu")
        kind = wanted if wanted != "auto" else ("mps" if host.machine == "arm64" else "cpu")
        return TorchBuild(kind, index, "macOS: the PyPI wheel (Metal on Apple silicon)")
    if wanted == "mps":
        raise ValueError("--torch mps is only for macOS on Apple silicon")
    if wanted == "cuda" or (wanted == "auto" and smi):
        build = _cuda_build(_cuda_version(smi or ""))
        reason = "asked for" if wanted == "cuda" else "nvidia-smi found an NVIDIA GPU"
        return TorchBuild("cuda", index or INDEX + build, f"{reason} ({build})")
    rocm = wanted == "auto" and any(which(tool) and run([tool]) for tool in ("rocminfo", "rocm-smi"))
    if wanted == "rocm" or rocm:
        if host.system == "win32":
            raise ValueError("PyTorch has no ROCm build for Windows; use --torch cpu (or WSL with ROCm)")
        reason = "asked for" if wanted == "rocm" else "rocminfo/rocm-smi found an AMD GPU"
        return TorchBuild("rocm", index or INDEX + ROCM_BUILD, f"{reason} ({ROCM_BUILD})")
    reason = "asked for" if wanted == "cpu" else "no NVIDIA or AMD GPU tools found"
    return TorchBuild("cpu", index or INDEX + "cpu", reason)
