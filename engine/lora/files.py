"""What a LoRA file is, from its header alone: its tensors' names and shapes, and the model families it can fit.

Key names tell the family in every common format once the format's prefix is gone and dots and underscores are
read alike (diffusers/peft `transformer.x.y.lora_A.weight`, kohya `lora_unet_x_y.lora_down.weight`, ComfyUI and
ai-toolkit `diffusion_model.x.y.lora_A.weight`). Where names cannot tell (FLUX.1 and FLUX.2 share BFL's block names;
an attention-only SD3 and Qwen-Image LoRA share diffusers' names) the candidates are all kept, or a shape ratio
decides (FLUX.1's MLP is 4x wide, FLUX.2's SwiGLU 2x3x). The exact check against a loaded transformer is
`engine.lora.apply.check_fit`.
"""

from __future__ import annotations

import json
import re
import struct
from dataclasses import dataclass
from pathlib import Path

from engine.errors import InvalidInput

LORA_SUFFIXES = (".safetensors",)
_PREFIXES = ("base_model.model.", "transformer.", "diffusion_model.", "model.diffusion_model.", "lora_unet_",
             "lora_transformer_", "unet.")
_LORA_MARKERS = ("lora_A", "lora_B", "lora_down", "lora_up", "lora.down", "lora.up", "lokr_", "alpha")
# Families whose LoRAs another family takes unchanged: Chroma is FLUX.1-schnell without its modulation layers.
SHARED_FAMILIES = {"flux": ("flux", "chroma")}


@dataclass(frozen=True)
class LoraFile:
    """A LoRA file's tensor names and shapes (from the header; no weight is read) and the families it may fit."""

    path: Path
    shapes: dict[str, tuple[int, ...]]
    families: tuple[str, ...]  # empty: no family Uprez drives

    @property
    def family_text(self) -> str:
        return " or ".join(self.families) if self.families else "unknown"

    def fits(self, family: str) -> bool:
        return family in self.families


def read_header(path: Path) -> dict[str, tuple[int, ...]]:
    """Tensor names and shapes from a .safetensors header (8-byte length + JSON), without reading the weights."""
    try:
        with path.open("rb") as f:
            (length,) = struct.unpack("<Q", f.read(8))
            if length > 100 * 2**20:
                raise ValueError("header larger than 100 MiB")
            header = json.loads(f.read(length))
    except FileNotFoundError as exc:
        raise InvalidInput(f"LoRA not found: {path} does not exist") from exc
    except (OSError, ValueError, struct.error) as exc:
        raise InvalidInput(f"{path} is not a readable .safetensors LoRA ({exc})") from exc
    return {key: tuple(value.get("shape", ())) for key, value in header.items() if key != "__metadata__"}


def _module(key: str) -> str:
    """The layer a LoRA tensor belongs to, prefix and lora suffix dropped, dots as underscores."""
    for prefix in _PREFIXES:
        if key.startswith(prefix):
            key = key[len(prefix):]
            break
    key = re.sub(r"\.(lora_[AB]|lora_down|lora_up|lora\.down|lora\.up|alpha|dora_scale|lokr_\w+)(\.\w+)*$", "", key)
    key = re.sub(r"\.default$", "", key)
    return key.replace(".", "_")


def _flux_generation(shapes: dict[str, tuple[int, ...]], modules: set[str]) -> tuple[str, ...]:
    """FLUX.1 or FLUX.2 for BFL/kohya block names, from the MLP's width (FLUX.1 4x, FLUX.2 2x3x), else both."""
    if any(re.search(r"(img|txt)_mod_lin|modulation_lin", m) for m in modules):
        return ("flux", "chroma")  # per-block modulation: FLUX.1 only (FLUX.2 and Chroma share theirs)
    for key, shape in shapes.items():
        up = re.search(r"(img_mlp_0|txt_mlp_0|linear1)\.(lora_up|lora_B)", key)
        if not up or len(shape) != 2:
            continue
        down_key = key.replace("lora_up", "lora_down").replace("lora_B", "lora_A")
        down = shapes.get(down_key)
        if not down or len(down) != 2 or not down[1]:
            continue
        ratio = shape[0] / down[1]
        mlp = ratio - 3 if "linear1" in key else ratio  # linear1 = fused qkv (3x) + MLP in
        if abs(mlp - 4) < 0.01:
            return ("flux", "chroma")
        if abs(mlp - 6) < 0.01:
            return ("flux2",)
    return ("flux", "flux2", "chroma")


def lora_families(shapes: dict[str, tuple[int, ...]]) -> tuple[str, ...]:
    """The families a LoRA's keys can belong to, most likely first; empty when they name none of ours."""
    modules = {_module(key) for key in shapes}
    text = " ".join(modules)
    if re.search(r"(^|\s)(layers_\d+_attention|noise_refiner|context_refiner)", text):
        return ("z-image",)
    if re.search(r"to_qkv_mlp_proj|ff_linear_in|ff_context_linear_in|single_stream_modulation", text):
        return ("flux2",)
    if re.search(r"(^|\s)(double_blocks|single_blocks)_\d+", text):
        return _flux_generation(shapes, modules)
    if re.search(r"(^|\s)single_transformer_blocks_\d+", text):
        with_modulation = re.search(r"single_transformer_blocks_\d+_norm_linear|transformer_blocks_\d+_norm1_", text)
        return ("flux",) if with_modulation else ("flux", "chroma")
    if re.search(r"(^|\s)joint_blocks_\d+|(^|\s)transformer_blocks_\d+_attn2_", text):
        return ("sd3",)
    if re.search(r"(^|\s)transformer_blocks_\d+_(img|txt)_(mlp|mod)|(^|\s)(img_in|txt_in)(\s|$)", text):
        return ("qwen-image",)
    if re.search(r"(^|\s)transformer_blocks_\d+_(ff_context|norm1_context|ff_net)", text):
        return ("sd3", "flux", "chroma")  # FLUX.1's double blocks alone look like SD3's joint blocks
    if re.search(r"(^|\s)transformer_blocks_\d+_attn_", text):
        return ("sd3", "qwen-image", "flux", "flux2", "chroma")
    return ()


def looks_like_lora(shapes: dict[str, tuple[int, ...]]) -> bool:
    return bool(shapes) and all(any(marker in key for marker in _LORA_MARKERS) for key in shapes)


def read_lora(path: str | Path) -> LoraFile:
    """A LoRA file's header and families; refuses, in one line, what is not a LoRA."""
    path = Path(path).expanduser()
    if path.is_dir() or path.suffix not in LORA_SUFFIXES:
        raise InvalidInput(f"{path} is not a LoRA file: LoRAs are .safetensors files (diffusers, kohya or ComfyUI)")
    shapes = read_header(path)
    if not looks_like_lora(shapes):
        raise InvalidInput(f"{path.name} is not a LoRA (its tensors have no lora_A/lora_B or lora_down/lora_up "
                           "names); a full model goes to --model")
    return LoraFile(path, shapes, lora_families(shapes))


def check_family(lora: LoraFile, family: str, model: str) -> None:
    """Refuse, in one line, a LoRA whose keys belong to another family than the model's."""
    if not lora.families:
        raise InvalidInput(f"{lora.path.name} is a LoRA for no model family Uprez runs (flux, flux2, sd3, "
                           f"qwen-image, z-image, chroma); it cannot be applied to {model}")
    if not lora.fits(family):
        raise InvalidInput(f"{lora.path.name} is a LoRA for {lora.family_text}, but the model {model} is "
                           f"{family}; use a {family} LoRA, or a {lora.families[0]} model")
