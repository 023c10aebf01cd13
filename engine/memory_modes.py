"""`--memory auto|gpu|model-offload|group-offload|sequential`: where a loaded model's weights live between calls,
through diffusers' own offloading (model CPU offload, group offload with CUDA streams, sequential offload)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from engine.errors import InvalidInput
from engine.memory import available_bytes, format_bytes
from engine.memory_plan import MEMORY_CHOICES, MODES, MemoryPlan, plan_model


def check_mode(mode: str, device: torch.device) -> None:
    """Refuse, in one line, a mode that does not exist or that this device cannot run."""
    if mode not in MEMORY_CHOICES:
        raise InvalidInput(f"unknown memory mode {mode!r}; use one of {', '.join(MEMORY_CHOICES)}")
    if device.type == "cpu" and mode not in ("auto", "gpu"):
        # Bad input, not a device failure: nothing to retry, and a smaller tile would not make it exist.
        raise InvalidInput(f"--memory {mode} moves weights between GPU and CPU memory, but this engine runs on the "
                          "CPU (no CUDA or Apple MPS device here); use --memory auto")


def next_mode(mode: str) -> str | None:
    """The mode after `mode` that needs less device memory, or None after the last."""
    if mode not in MODES:
        return None
    index = MODES.index(mode)
    return MODES[index + 1] if index + 1 < len(MODES) else None


def weight_format_of(path: Path, dtype: torch.dtype) -> str:
    """How a single transformer file stores its weights, from its header: a GGUF quantization type, fp8, or the
    dtype it will be computed in (a bf16/fp16 file is converted on load)."""
    from engine.memory_plan import FORMATS, _float_name

    if path.suffix == ".gguf":
        try:
            from gguf import GGUFReader

            counts: dict[str, int] = {}
            for tensor in GGUFReader(str(path)).tensors:
                name = tensor.tensor_type.name
                counts[name] = counts.get(name, 0) + int(tensor.n_elements)
            dominant = max(counts, key=counts.__getitem__)
            return dominant if dominant in FORMATS else "Q8_0"
        except Exception:  # no gguf package, or an unreadable file (the load will say so): assume the largest
            return "Q8_0"
    if path.suffix == ".safetensors":
        try:
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as f:
                names = list(f.keys())
                sample = [f.get_slice(name).get_dtype() for name in names[:: max(1, len(names) // 64)]]
            if sum(d.startswith("F8") for d in sample) * 2 > len(sample):
                return "fp8"
        except Exception:
            pass
    return _float_name(dtype)


def make_plan(source: str, base: str | None, device: torch.device, dtype: torch.dtype) -> MemoryPlan | None:
    """The model's plan from its config files on the meta device, or None where its architecture is unknown."""
    path = Path(source).expanduser()
    fmt = weight_format_of(path, dtype) if path.is_file() else {torch.float32: "fp32", torch.float16: "fp16"}.get(
        dtype, "bf16")
    try:
        return plan_model(source, base=base, weight_format=fmt, compute_dtype=dtype, cuda=device.type == "cuda")
    except Exception:  # an architecture we cannot build empty (the load itself will report real problems)
        return None


def choose_mode(requested: str, plan: MemoryPlan | None, device: torch.device, free: int | None) -> str:
    """`requested` itself, or for `auto` the fastest mode the plan fits (the CPU has only one)."""
    check_mode(requested, device)
    if requested != "auto":
        return requested
    if device.type == "cpu" or plan is None:
        return "gpu"
    return plan.choose(free) or "sequential"  # nothing fits at the default tile: the least memory, tiles shrink


def apply_mode(pipe: Any, mode: str, device: torch.device) -> None:
    """Put the pipeline's components where `mode` keeps them (diffusers installs the hooks that move them)."""
    if mode == "gpu":
        pipe.to(device)
    elif mode == "model-offload":
        pipe.enable_model_cpu_offload(device=device)
    elif mode == "group-offload":
        # One transformer block at a time; on CUDA the next block is copied on a side stream while this one runs.
        pipe.enable_group_offload(onload_device=device, offload_device=torch.device("cpu"),
                                  offload_type="block_level", num_blocks_per_group=1,
                                  use_stream=device.type == "cuda")
    elif mode == "sequential":
        pipe.enable_sequential_cpu_offload(device=device)
    else:
        raise InvalidInput(f"unknown memory mode {mode!r}; use one of {', '.join(MEMORY_CHOICES)}")


def free_device_bytes(device: torch.device) -> int | None:
    """Free memory the plan may use: CUDA's free bytes, MPS's recommended working set, or free RAM."""
    if device.type == "mps":
        try:
            return int(torch.mps.recommended_max_memory()) - int(torch.mps.driver_allocated_memory())
        except (AttributeError, RuntimeError):
            return None
    return available_bytes(device)


def describe(mode: str, requested: str, plan: MemoryPlan | None, free: int | None) -> str:
    """One line on the choice, for `uprez upscale` and logs."""
    if plan is None or requested != "auto":
        return f"memory mode {mode}"
    return (f"memory mode {mode} (auto: peak ~{format_bytes(plan.peak(mode))}"
            + (f" of {format_bytes(free)} free)" if free is not None else ")"))
