"""Quantized transformer files made from a saved (tiny) model, as the public conversions lay them out.

GGUF files are written with the `gguf` package (llama.cpp's own writer and quantizers), fp8 files with
safetensors. Key names follow the published files where diffusers' converter works at any width (Z-Image's
original names, optionally with ComfyUI's `model.diffusion_model.` prefix); diffusers' names otherwise (its
FLUX.1 converter assumes the real 3072 width). As city96's conversions do, only linear-layer weights are
quantized, and only when their rows split into whole blocks; everything else stays F32.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

COMFY_PREFIX = "model.diffusion_model."


def _load(folder: Path) -> tuple[dict[str, torch.Tensor], set[str]]:
    """A saved model's transformer weights, and the names of its linear layers' weights."""
    import diffusers
    from safetensors.torch import load_file

    state: dict[str, torch.Tensor] = {}
    for shard in sorted((Path(folder) / "transformer").glob("*.safetensors")):
        state.update(load_file(shard))
    config = json.loads((Path(folder) / "transformer" / "config.json").read_text())
    with torch.device("meta"):
        model = getattr(diffusers, config["_class_name"]).from_config(config)
    linear = {f"{name}.weight" for name, module in model.named_modules() if isinstance(module, torch.nn.Linear)}
    return state, linear


# -- original key names, the inverse of diffusers' converters (applied on the way back in) ------------------------
_Z_IMAGE_RENAMES = (
    ("all_final_layer.2-1.", "final_layer."), ("all_x_embedder.2-1.", "x_embedder."),
    (".attention.to_out.0.", ".attention.out."), (".attention.norm_k.", ".attention.k_norm."),
    (".attention.norm_q.", ".attention.q_norm."),
)


def z_image_original(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Z-Image's diffusers names -> its original ones: renamed, with q/k/v fused into one qkv weight."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        q = re.fullmatch(r"(.*\.attention)\.to_q\.weight", key)
        if q:
            out[f"{q[1]}.qkv.weight"] = torch.cat([state[f"{q[1]}.to_{p}.weight"] for p in "qkv"])
            continue
        if re.fullmatch(r".*\.attention\.to_[kv]\.weight", key):
            continue
        for old, new in _Z_IMAGE_RENAMES:
            key = key.replace(old, new)
        out[key] = value
    return out


def _quantizable(state: dict[str, torch.Tensor], linear: set[str],
                 rename: Callable[[dict], dict]) -> set[str]:
    """Renamed keys that hold only linear weights (a fused qkv is three of them)."""
    marks = {k: torch.tensor(1.0 if k in linear else 0.0) for k in state}
    return {k for k, v in rename({k: v.reshape(1) for k, v in marks.items()}).items() if v.min() > 0}


def _renamer(names: str) -> Callable[[dict], dict]:
    if names == "diffusers":
        return lambda state: dict(state)
    if names == "z-image-original":
        return z_image_original
    raise ValueError(f"unknown key naming {names!r}")


def save_gguf(folder: Path, out: Path, qtype: str = "Q8_0", *, names: str = "diffusers", arch: str = "flux",
              prefix: str = "") -> Path:
    """The model's transformer as a GGUF file of `qtype` (any type the gguf package can quantize)."""
    import gguf

    kind = gguf.GGMLQuantizationType[qtype]
    block, _ = gguf.GGML_QUANT_SIZES[kind]
    state, linear = _load(folder)
    rename = _renamer(names)
    quantize = _quantizable(state, linear, rename)
    writer = gguf.GGUFWriter(str(out), arch=arch)
    writer.add_file_type(int(kind))
    for key, value in rename(state).items():
        array = value.float().numpy()
        if key in quantize and array.ndim == 2 and array.shape[-1] % block == 0:
            data = gguf.quants.quantize(array, kind)
            writer.add_tensor(prefix + key, data, raw_shape=data.shape, raw_dtype=kind)
        else:
            writer.add_tensor(prefix + key, array.astype(np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return Path(out)


def save_fp8(folder: Path, out: Path, dtype: torch.dtype = torch.float8_e4m3fn, *, names: str = "diffusers",
             prefix: str = "") -> Path:
    """The model's transformer as ComfyUI saves "fp8" checkpoints: linear weights in `dtype`, the rest bf16."""
    from safetensors.torch import save_file

    state, linear = _load(folder)
    rename = _renamer(names)
    quantize = _quantizable(state, linear, rename)
    tensors = {prefix + k: v.to(dtype if k in quantize else torch.bfloat16).contiguous()
               for k, v in rename(state).items()}
    save_file(tensors, str(out), metadata={"format": "pt"})
    return Path(out)
