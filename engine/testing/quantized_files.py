"""Quantized transformer files made from a saved (tiny) model, as the public conversions lay them out.

GGUF files are written with the `gguf` package (llama.cpp's own writer and quantizers), fp8 files with
safetensors. Key names follow the published files where diffusers' converter works at any width (Z-Image's and
FLUX.2's original names, optionally with ComfyUI's `model.diffusion_model.` prefix); diffusers' names otherwise
(its FLUX.1 converter assumes the real 3072 width). As city96's conversions do, only linear-layer weights are
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


_FLUX2_TOP = (
    ("x_embedder.", "img_in."), ("context_embedder.", "txt_in."),
    ("time_guidance_embed.timestep_embedder.linear_1.", "time_in.in_layer."),
    ("time_guidance_embed.timestep_embedder.linear_2.", "time_in.out_layer."),
    ("time_guidance_embed.guidance_embedder.linear_1.", "guidance_in.in_layer."),
    ("time_guidance_embed.guidance_embedder.linear_2.", "guidance_in.out_layer."),
    ("_modulation_img.linear.", "_modulation_img.lin."), ("_modulation_txt.linear.", "_modulation_txt.lin."),
    ("single_stream_modulation.linear.", "single_stream_modulation.lin."), ("proj_out.", "final_layer.linear."),
)
_FLUX2_DOUBLE = {
    "attn.norm_q.weight": "img_attn.norm.query_norm.scale", "attn.norm_k.weight": "img_attn.norm.key_norm.scale",
    "attn.norm_added_q.weight": "txt_attn.norm.query_norm.scale",
    "attn.norm_added_k.weight": "txt_attn.norm.key_norm.scale",
    "attn.to_out.0.weight": "img_attn.proj.weight", "attn.to_add_out.weight": "txt_attn.proj.weight",
    "ff.linear_in.weight": "img_mlp.0.weight", "ff.linear_out.weight": "img_mlp.2.weight",
    "ff_context.linear_in.weight": "txt_mlp.0.weight", "ff_context.linear_out.weight": "txt_mlp.2.weight",
}
_FLUX2_SINGLE = {
    "attn.to_qkv_mlp_proj.weight": "linear1.weight", "attn.to_out.weight": "linear2.weight",
    "attn.norm_q.weight": "norm.query_norm.scale", "attn.norm_k.weight": "norm.key_norm.scale",
}


def flux2_original(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """FLUX.2's diffusers names -> BFL's: fused qkv per stream, `.scale` norms, (shift, scale) final modulation."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        block = re.fullmatch(r"transformer_blocks\.(\d+)\.(.+)", key)
        single = re.fullmatch(r"single_transformer_blocks\.(\d+)\.(.+)", key)
        if block:
            n, rest = block.groups()
            fused = {"attn.to_q.weight": ("img", "to_{}"), "attn.add_q_proj.weight": ("txt", "add_{}_proj")}
            if rest in fused:
                stream, name = fused[rest]
                parts = [state[f"transformer_blocks.{n}.attn.{name.format(p)}.weight"] for p in "qkv"]
                out[f"double_blocks.{n}.{stream}_attn.qkv.weight"] = torch.cat(parts)
            elif rest in _FLUX2_DOUBLE:
                out[f"double_blocks.{n}.{_FLUX2_DOUBLE[rest]}"] = value
            continue  # k and v went into the fused qkv
        if single:
            out[f"single_blocks.{single[1]}.{_FLUX2_SINGLE[single[2]]}"] = value
            continue
        if key == "norm_out.linear.weight":  # diffusers keeps (scale, shift), the original (shift, scale)
            scale, shift = value.chunk(2, dim=0)
            out["final_layer.adaLN_modulation.1.weight"] = torch.cat([shift, scale])
            continue
        for old, new in _FLUX2_TOP:
            key = key.replace(old, new)
        out[key] = value
    return out


def _quantizable(state: dict[str, torch.Tensor], linear: set[str],
                 rename: Callable[[dict], dict]) -> set[str]:
    """Renamed keys that hold only linear weights (a fused qkv is three of them)."""
    marks = {k: torch.full((2,), 1.0 if k in linear else 0.0) for k in state}  # 2: renames may split halves
    return {k for k, v in rename(marks).items() if v.min() > 0}


def _renamer(names: str) -> Callable[[dict], dict]:
    if names == "diffusers":
        return lambda state: dict(state)
    if names == "z-image-original":
        return z_image_original
    if names == "flux2-original":
        return flux2_original
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
