"""Memory plans: each component's exact weight bytes from its real architecture built on the `meta` device (no
weights are read), for a chosen weight format, plus the activations of one tile, per memory mode.

`auto` picks the fastest mode whose peak fits the free device memory; `uprez models plan MODEL` prints it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from engine.memory import format_bytes
from engine.models.architectures import ARCHITECTURES, Architecture, Part
from engine.settings import MEMORY_CHOICES, MEMORY_MODES

# Fastest first: everything resident; one whole component at a time (moved per stage); one block at a time,
# streamed (moved every step); one leaf layer at a time (the least memory, the most traffic).
MODES = MEMORY_MODES


# Bits per weight of a quantized Linear weight. GGML's block layouts (ggml-common.h; gguf's GGML_QUANT_SIZES):
# Q8_0 is 32 int8 + an fp16 scale per 32 weights (34 bytes); Q6_K 210 bytes, Q5_K 176, Q4_K 144, Q3_K 110,
# Q2_K 84 per 256; Q5_0 22, Q5_1 24, Q4_0 18, Q4_1 20 per 32. fp8 is one byte; bitsandbytes nf4 is 4 bits plus
# an fp32 absmax per 64 (no double quantization, diffusers' default); int8 is a byte plus a per-row scale.
QUANT_BITS: dict[str, float] = {
    "Q8_0": 8.5, "Q6_K": 6.5625, "Q5_K": 5.5, "Q5_1": 6.0, "Q5_0": 5.5, "Q4_K": 4.5, "Q4_1": 5.0, "Q4_0": 4.5,
    "Q3_K": 3.4375, "Q2_K": 2.625, "fp8": 8.0, "nf4": 4.5, "int8": 8.0,
}
GGUF_BLOCK = {name: 256 if name.endswith("_K") else 32 for name in QUANT_BITS if name.startswith("Q")}
# Rows that do not split into 256-weight K blocks get a 32-block type instead, as llama.cpp's quantizer does.
K_FALLBACK = {"Q6_K": "Q8_0", "Q5_K": "Q5_1", "Q4_K": "Q5_0", "Q3_K": "Q4_0", "Q2_K": "Q4_0"}
FLOAT_BYTES = {"fp32": 4, "float32": 4, "bf16": 2, "bfloat16": 2, "fp16": 2, "float16": 2}
FORMATS = (*FLOAT_BYTES, *QUANT_BITS)
# Modules diffusers' layerwise casting (the fp8 path) leaves in the compute dtype.
FP8_SKIP = ("pos_embed", "patch_embed", "norm", "^proj_in$", "^proj_out$")
# Transient activations of one transformer call per token, in hidden widths: q, k, v, attention out, the
# residual stream and a 4x MLP (FLUX's single blocks fuse 3 + 4 widths), with room for the allocator.
_ACTIVATION_WIDTHS = 32  # twice that count: rotary embeddings and norms work in float32
_VAE_LIVE_ACTIVATIONS = 8  # full-resolution activations of the VAE's widest level, some in float32 (GroupNorm)
SAFETY = 512 * 2**20  # the CUDA context, allocator fragmentation and our own buffers


@dataclass(frozen=True)
class ComponentBytes:
    """One component's weight bytes, and the parts group and sequential offload move one at a time."""

    name: str
    total: int
    largest_block: int  # the biggest entry of its top-level block lists (transformer blocks)
    outside_blocks: int  # everything else: embedders, final layers (group offload moves these as one group)
    largest_leaf: int  # the biggest single layer (sequential offload moves these one at a time)

    @property
    def is_text(self) -> bool:
        return self.name.startswith("text_encoder")


def _element_bits(module: torch.nn.Module, module_name: str, param_name: str, param: torch.Tensor, fmt: str,
                  compute_bits: float, skip: tuple[str, ...]) -> float:
    """Bits one element of `param` takes when its model is stored in `fmt`."""
    if fmt in FLOAT_BYTES:
        return FLOAT_BYTES[fmt] * 8
    leaf = module_name.rsplit(".", 1)[-1]
    if fmt == "fp8":
        castable = isinstance(module, (torch.nn.Linear, torch.nn.Conv2d, torch.nn.Conv3d))
        skipped = any(re.search(pattern, module_name) or re.search(pattern, leaf) for pattern in skip)
        return 8.0 if castable and not skipped else compute_bits
    if isinstance(module, torch.nn.Linear) and param_name == "weight":
        if module.in_features % GGUF_BLOCK.get(fmt, 64) == 0:
            return QUANT_BITS[fmt]
        fallback = K_FALLBACK.get(fmt)
        if fallback is not None and module.in_features % GGUF_BLOCK[fallback] == 0:
            return QUANT_BITS[fallback]
    return compute_bits  # rows that split into no block stay unquantized


def component_bytes(name: str, model: torch.nn.Module, fmt: str, compute_dtype: torch.dtype) -> ComponentBytes:
    """Weight bytes of a (meta-device) module stored in `fmt` and run in `compute_dtype`."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown weight format {fmt!r}; use one of {', '.join(FORMATS)}")
    compute_bits = float(torch.finfo(compute_dtype).bits)
    skip = (*FP8_SKIP, *(getattr(model, "_skip_layerwise_casting_patterns", None) or ()))
    sizes: dict[str, float] = {}
    seen: set[int] = set()  # a tied weight (an lm_head that is the embedding) is stored once
    for module_name, module in model.named_modules():
        for param_name, param in module.named_parameters(recurse=False):
            if id(param) in seen:
                continue
            seen.add(id(param))
            bits = _element_bits(module, module_name, param_name, param, fmt, compute_bits, skip)
            sizes[f"{module_name}.{param_name}" if module_name else param_name] = param.numel() * bits / 8
        for buffer_name, buffer in module.named_buffers(recurse=False):
            sizes[f"{module_name}.{buffer_name}"] = buffer.numel() * buffer.element_size()
    total = round(sum(sizes.values()))

    def under(prefix: str) -> float:
        return sum(size for key, size in sizes.items() if key.startswith(prefix + "."))

    blocks = [under(f"{list_name}.{i}") for list_name, child in model.named_children()
              if isinstance(child, (torch.nn.ModuleList, torch.nn.Sequential)) for i in range(len(child))]
    leaves = [under(module_name) if module_name else 0.0 for module_name, module in model.named_modules()
              if not list(module.children())]
    largest_block = round(max(blocks, default=0.0))
    return ComponentBytes(name, total, largest_block, total - round(sum(blocks)), round(max(leaves, default=0.0)))


def build_on_meta(part: Part) -> torch.nn.Module:
    """The component's real architecture with every tensor on the `meta` device: shapes, no memory."""
    with torch.device("meta"):
        if part.library == "diffusers":
            import diffusers

            return getattr(diffusers, part.class_name).from_config(part.config)
        import transformers

        config = dict(part.config)
        config_obj = transformers.AutoConfig.for_model(config.pop("model_type"), **config)
        model = getattr(transformers, part.class_name)._from_config(config_obj)
        model.tie_weights()  # a tied lm_head is the embedding itself, not a second copy
        return model


def _transformer_width(config: dict[str, Any]) -> tuple[int, int]:
    """(hidden width, attention heads) of a transformer config, whichever family's names it uses."""
    if "dim" in config:  # Z-Image
        return int(config["dim"]), int(config.get("n_heads", 30))
    heads = int(config.get("num_attention_heads", 48))
    return heads * int(config.get("attention_head_dim", 128)), heads


@dataclass(frozen=True)
class MemoryPlan:
    """Weight bytes per component and activation bytes per phase, and from them each mode's peak."""

    model: str
    weight_format: str
    compute_dtype: torch.dtype
    tile: int  # pixels a side of one denoising / VAE tile
    components: tuple[ComponentBytes, ...]
    transformer_activation: int
    vae_activation: int
    text_activation: int

    def _get(self, name: str) -> ComponentBytes:
        return next(c for c in self.components if c.name == name)

    @property
    def text_bytes(self) -> int:
        return sum(c.total for c in self.components if c.is_text)

    def peak(self, mode: str) -> int:
        """Device bytes at the worst moment of a job in `mode`, text encoding aside (see `text_on_device`)."""
        t, v = self._get("transformer"), self._get("vae")
        act_t, act_v = self.transformer_activation, self.vae_activation
        if mode == "gpu":
            return t.total + v.total + max(act_t, act_v)
        if mode == "model-offload":
            return max(t.total + act_t, v.total + act_v)
        if mode == "group-offload":  # the current block and the next one, prefetched on a second stream
            return max(t.outside_blocks + 2 * t.largest_block + act_t, v.total + act_v)
        if mode == "sequential":
            return max(2 * t.largest_leaf + act_t, 2 * v.largest_leaf + act_v)
        raise ValueError(f"unknown memory mode {mode!r}; use one of {', '.join(MEMORY_CHOICES)}")

    def resident_during_text(self, mode: str) -> int:
        """What stays on the device while the text encoders run in `mode`."""
        t, v = self._get("transformer"), self._get("vae")
        return {"gpu": t.total + v.total, "model-offload": v.total}.get(mode, 0)

    def text_on_device(self, mode: str, free: int | None) -> bool:
        """Whether the text encoders fit on the device beside what `mode` keeps there (else they run on the CPU)."""
        need = self.resident_during_text(mode) + self.text_bytes + self.text_activation
        return free is None or need + SAFETY <= free

    def keep_text_encoders(self, mode: str, free: int | None) -> bool:
        """Whether the text encoders may stay loaded beside everything else for the next prompt."""
        return mode == "gpu" and free is not None and self.peak("gpu") + self.text_bytes + SAFETY <= free

    def choose(self, free: int | None) -> str | None:
        """The fastest mode whose peak fits `free` bytes (None: unknown, so everything on the device); None if none."""
        if free is None:
            return "gpu"
        return next((mode for mode in MODES if self.peak(mode) + SAFETY <= free), None)

    def render(self, free: int | None = None, device: str = "") -> str:
        """The plan as a person reads it: components, activations, each mode's peak and the choice."""
        lines = [f"{self.model}: weights {self.weight_format} (transformer), computed in "
                 f"{str(self.compute_dtype).removeprefix('torch.')}; tiles of {self.tile}x{self.tile} pixels"]
        for c in self.components:
            lines.append(f"  {c.name:<15} {format_bytes(c.total):>10}   largest block {format_bytes(c.largest_block)}"
                         f", largest layer {format_bytes(c.largest_leaf)}")
        lines.append(f"  activations: transformer {format_bytes(self.transformer_activation)}, VAE "
                     f"{format_bytes(self.vae_activation)}, text encoders {format_bytes(self.text_activation)}")
        lines.append("  peak device memory per mode (text encoders load, encode and are freed before the transformer "
                     "runs; a cached prompt never loads them):")
        for mode in MODES:
            text = "on the device" if self.text_on_device(mode, free) else "on the CPU"
            fits = "" if free is None else ("  fits" if self.peak(mode) + SAFETY <= free else "  too big")
            lines.append(f"    {mode:<14} {format_bytes(self.peak(mode)):>10}   text encoders {text}{fits}")
        if free is not None:
            chosen = self.choose(free)
            where = f" ({device})" if device else ""
            none = "nothing that fits: a smaller tile or a quantized file (--format Q4_K) is needed"
            lines.append(f"  free device memory{where}: {format_bytes(free)} -> auto picks {chosen or none}")
        return "\n".join(lines)


def plan_parts(model: str, parts: tuple[Part, ...], *, weight_format: str = "bf16",
               compute_dtype: torch.dtype = torch.bfloat16, text_format: str | None = None, tile: int = 1024,
               text_tokens: int = 512, cuda: bool = True) -> MemoryPlan:
    """The plan of a model given its parts' architectures: built on `meta`, counted, nothing loaded."""
    components = []
    text_width = 0
    t_config: dict[str, Any] = {}
    vae_width = 128
    for part in parts:
        module = build_on_meta(part)
        if part.name == "transformer":
            fmt = weight_format
            t_config = dict(module.config)
        elif part.name.startswith("text_encoder"):
            fmt = text_format or _float_name(compute_dtype)
            text_width = max(text_width, int(_text_width(module)))
        else:
            fmt = _float_name(compute_dtype)
            config = dict(module.config)
            vae_width = int((config.get("block_out_channels") or [config.get("base_dim", 128)])[0])
        components.append(component_bytes(part.name, module, fmt, compute_dtype))
        del module
    element = torch.finfo(compute_dtype).bits // 8
    hidden, heads = _transformer_width(t_config)
    tokens = (tile // 16) ** 2 + text_tokens
    act_t = tokens * hidden * element * _ACTIVATION_WIDTHS
    if not cuda:  # without CUDA's fused attention kernels the score matrix is materialised, per head
        act_t += tokens * tokens * heads * element
    act_v = tile * tile * vae_width * element * _VAE_LIVE_ACTIVATIONS
    act_text = 512 * text_width * element * _ACTIVATION_WIDTHS
    return MemoryPlan(model, weight_format, compute_dtype, tile, tuple(components), act_t, act_v, act_text)


def _float_name(dtype: torch.dtype) -> str:
    return {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype]


def _text_width(module: torch.nn.Module) -> int:
    config = module.config
    text = getattr(config, "text_config", None) or config
    return int(getattr(text, "hidden_size", None) or getattr(text, "d_model", 0) or 0)


def architecture_of(source: str, base: str | None = None) -> Architecture:
    """The parts of a named model (the catalog's real architectures), a local diffusers folder, or a single
    transformer file completed by `base`; reads config files only."""
    if source in ARCHITECTURES:
        return ARCHITECTURES[source]
    path = Path(source).expanduser()
    if path.is_file():
        if base is None:
            raise ValueError(f"{path.name} is a transformer file: name its base model (--base) to plan the rest")
        return architecture_of(base)
    from engine.backends.text_encoders import local_folder

    folder = local_folder(source)
    if folder is None or not (folder / "model_index.json").is_file():
        known = ", ".join(ARCHITECTURES)
        raise ValueError(f"{source!r} is neither a local diffusers folder, a downloaded repo id nor one of: {known}")
    index = json.loads((folder / "model_index.json").read_text())
    parts = []
    for name, value in sorted(index.items()):
        if not isinstance(value, (list, tuple)) or value[0] is None:
            continue
        if name != "transformer" and name != "vae" and not name.startswith("text_encoder"):
            continue
        config = json.loads((folder / name / "config.json").read_text())
        if value[0] == "transformers":
            config = {key: item for key, item in config.items() if not key.startswith("_")}
            config.pop("architectures", None)
            config.pop("transformers_version", None)
        parts.append(Part(name, value[0], value[1], config))
    from engine.backends.registry import family_for_pipeline

    return Architecture(str(source), family_for_pipeline(index["_class_name"], str(source)).name, tuple(parts))


def plan_model(source: str, *, base: str | None = None, weight_format: str = "bf16",
               compute_dtype: torch.dtype = torch.bfloat16, text_format: str | None = None, tile: int | None = None,
               cuda: bool = True) -> MemoryPlan:
    """`plan_parts` for a model named as `uprez upscale --model` takes it."""
    arch = architecture_of(source, base)
    if tile is None:
        tile = 1024  # every supported family's native size
    return plan_parts(source, arch.parts, weight_format=weight_format, compute_dtype=compute_dtype,
                      text_format=text_format, tile=tile, text_tokens=arch.text_tokens, cuda=cuda)
