"""Quantized transformer files through diffusers' own quantizers: GGUF, fp8 .safetensors, bitsandbytes nf4/int8.

Nothing here dequantizes or converts keys itself: GGUF goes through `GGUFQuantizationConfig`, fp8 through
diffusers' layerwise-casting hook (`fp8.py`), nf4/int8 through `BitsAndBytesConfig`, and original/ComfyUI key
names through the family's converter that `from_single_file` picks. What is ours is reading the file first, so that
what diffusers cannot load is refused in one line before any weights are read.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from engine.backends.fp8 import FP8_DTYPES
from engine.errors import DeviceError, ModelNotFound, UnknownModelFamily

# GGUF `general.architecture` values that public conversions of our families use (ComfyUI-GGUF's names: "flux"
# also for FLUX.2, "lumina2" for Z-Image, whose layout is Lumina 2's; "pig" is one converter's family-less tag).
# Files without the field are judged by their keys alone; a file naming another architecture is not ours.
GGUF_ARCHITECTURES = ("flux", "flux2", "chroma", "sd3", "qwen_image", "lumina2", "z_image", "pig")
BNB_MODES = ("nf4", "int8")
# Key fragments of formats that look like fp8/nf4 files but that diffusers' single-file loader cannot read.
_SCALED_FP8 = ("scaled_fp8", ".scale_weight", ".weight_scale")
_BNB_STATE = (".quant_state.", ".absmax", ".quant_map", ".SCB")
COMFY_PREFIX = "model.diffusion_model."  # ComfyUI's whole-checkpoint prefix; not every converter strips it


@dataclass(frozen=True)
class CheckpointFile:
    """What a transformer file holds, read from its header only: key names and how the weights are stored."""

    path: Path
    keys: tuple[str, ...]
    kind: str  # "gguf", "fp8" or "safetensors" (full precision)
    storage: dict[str, torch.dtype]  # fp8 tensors' dtypes by key (empty unless kind == "fp8")
    quant_types: tuple[str, ...] = ()  # GGUF tensor types present, e.g. ("F32", "Q8_0")

    @property
    def prefixed(self) -> bool:
        return bool(self.keys) and all(key.startswith(COMFY_PREFIX) for key in self.keys)

    @property
    def description(self) -> str:
        if self.kind == "gguf":
            quantized = "/".join(t for t in self.quant_types if t not in ("F32", "F16"))
            return f"GGUF {quantized}" if quantized else "GGUF"
        if self.kind == "fp8":
            return "fp8 " + "/".join(sorted({_fp8_name(d) for d in self.storage.values()}))
        return "safetensors"


def _fp8_name(dtype: torch.dtype) -> str:
    return "e4m3fn" if dtype == torch.float8_e4m3fn else "e5m2"


def read_checkpoint(path: Path) -> CheckpointFile:
    """Inspect a .gguf or .safetensors transformer file; one-line errors for what diffusers could not load."""
    return _read_gguf(path) if path.suffix == ".gguf" else _read_safetensors(path)


def _read_gguf(path: Path) -> CheckpointFile:
    try:
        from gguf import GGMLQuantizationType, GGUFReader
    except ImportError as exc:  # a dependency of ours; missing only in a broken environment
        raise ModelNotFound(f"{path.name} is a GGUF file and the `gguf` package is missing; "
                            "`pip install gguf` in Uprez's environment") from exc
    from diffusers.quantizers.gguf.utils import SUPPORTED_GGUF_QUANT_TYPES

    try:
        reader = GGUFReader(str(path))
    except Exception as exc:  # gguf raises ValueError, struct errors and more on a foreign or cut file
        raise ModelNotFound(f"{path} is not a readable GGUF file ({type(exc).__name__}: {exc}); if it was cut "
                            "short, download it again") from exc
    field = reader.get_field("general.architecture")
    arch = str(field.contents()) if field is not None else None
    if arch is not None and arch not in GGUF_ARCHITECTURES:
        raise UnknownModelFamily(
            f"{path.name} is a GGUF of architecture {arch!r}, which Uprez does not run; it runs GGUF transformers "
            "of FLUX.1, FLUX.2, Chroma, SD3, Qwen-Image and Z-Image (architectures flux, sd3, qwen_image, lumina2)"
        )
    plain = (GGMLQuantizationType.F32, GGMLQuantizationType.F16)
    unloadable = sorted({t.tensor_type.name for t in reader.tensors
                         if t.tensor_type not in plain and t.tensor_type not in SUPPORTED_GGUF_QUANT_TYPES})
    if unloadable:
        supported = ", ".join(sorted(t.name for t in SUPPORTED_GGUF_QUANT_TYPES))
        raise ModelNotFound(
            f"{path.name} holds {', '.join(unloadable)} tensors, which diffusers cannot load; "
            f"use a GGUF of one of: {supported}, F16, F32"
        )
    types = tuple(sorted({t.tensor_type.name for t in reader.tensors}))
    return CheckpointFile(path, tuple(t.name for t in reader.tensors), "gguf", {}, types)


def _read_safetensors(path: Path) -> CheckpointFile:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            dtypes = {key: f.get_slice(key).get_dtype() for key in f.keys()}  # noqa: SIM118 - not a dict
    except Exception as exc:  # a truncated or foreign file; safetensors raises several types
        raise ModelNotFound(f"{path} is not a readable .safetensors checkpoint: {exc}") from exc
    keys = tuple(dtypes)
    if any(marker in key for key in keys for marker in _BNB_STATE):
        raise ModelNotFound(
            f"{path.name} is a bitsandbytes (nf4/int8) checkpoint, which diffusers cannot load from one file; use "
            "the full-precision model with --quantize nf4 (CUDA only), or a GGUF or fp8 file"
        )
    storage = {key: FP8_DTYPES[name] for key, name in dtypes.items() if name in FP8_DTYPES}
    if storage and any(marker in key for key in keys for marker in _SCALED_FP8):
        raise ModelNotFound(
            f"{path.name} is a *scaled* fp8 checkpoint (per-tensor scales), which diffusers cannot load; "
            "use a plain fp8 (e4m3fn/e5m2) file, a GGUF file or the full-precision model"
        )
    return CheckpointFile(path, keys, "fp8" if storage else "safetensors", storage)


# -- loading -------------------------------------------------------------------------------------------------------
def load_transformer(checkpoint: CheckpointFile, transformer_cls: type, base: str, dtype: torch.dtype,
                     device: torch.device, quantize: str | None = None) -> torch.nn.Module:
    """The transformer of `checkpoint`, its config from `base`'s transformer folder (no download)."""
    kwargs: dict[str, Any] = {"config": base, "subfolder": "transformer", "local_files_only": True}
    path: Any = str(checkpoint.path)
    if checkpoint.prefixed:  # FLUX.2's converter, for one, expects the keys without ComfyUI's prefix
        from diffusers.loaders.single_file_utils import load_single_file_checkpoint

        path = {key.removeprefix(COMFY_PREFIX): value for key, value in load_single_file_checkpoint(path).items()}
    if checkpoint.kind == "gguf":
        if quantize:
            raise ModelNotFound(f"{checkpoint.path.name} is already quantized (GGUF); drop --quantize {quantize}")
        from diffusers import GGUFQuantizationConfig

        # Weights stay in their GGUF blocks; each layer dequantizes to `dtype` when it runs.
        return transformer_cls.from_single_file(
            path, quantization_config=GGUFQuantizationConfig(compute_dtype=dtype), dtype=dtype, **kwargs)
    if quantize:
        if checkpoint.kind == "fp8":
            raise ModelNotFound(f"{checkpoint.path.name} is already fp8; --quantize {quantize} needs a "
                                "full-precision checkpoint")
        return transformer_cls.from_single_file(
            path, quantization_config=bnb_config(quantize, dtype, device), dtype=dtype, **kwargs)
    if checkpoint.kind != "fp8":
        return transformer_cls.from_single_file(path, dtype=dtype, **kwargs)
    from engine.backends.fp8 import fp8_storable, load_fp8

    missing = [d for d in set(checkpoint.storage.values()) if not fp8_storable(d, device)]
    if missing:
        # Older torch builds have no float8 tensors on Apple MPS: the weights then stay in `dtype` (exact, but
        # twice fp8's memory). Said once, on stderr, as the job still runs.
        logging.getLogger("uprez").warning(
            "%s: this torch cannot keep %s weights on %s; they are kept in %s instead",
            checkpoint.path.name, "/".join(sorted(_fp8_name(d) for d in missing)), device.type, dtype)
        return transformer_cls.from_single_file(path, dtype=dtype, **kwargs)
    return load_fp8(transformer_cls, path, checkpoint.storage, dtype, kwargs)


def bnb_config(mode: str, torch_dtype: torch.dtype | None, device: torch.device) -> Any:
    """diffusers' BitsAndBytesConfig for `mode`; bitsandbytes' kernels need CUDA, so anything else is refused."""
    if mode not in BNB_MODES:
        raise DeviceError(f"unknown quantization {mode!r}; use nf4 or int8 (bitsandbytes, CUDA only)")
    if device.type != "cuda":
        raise DeviceError(f"--quantize {mode} uses bitsandbytes, which needs a CUDA GPU (the device here is "
                          f"{device.type}); use a GGUF or fp8 file instead, which run anywhere")
    try:
        import bitsandbytes  # noqa: F401 - only to say clearly that it is missing
    except ImportError as exc:
        raise DeviceError(f"--quantize {mode} needs the bitsandbytes package: `pip install bitsandbytes` "
                          "in Uprez's environment") from exc
    from diffusers import BitsAndBytesConfig

    if mode == "nf4":
        return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                  bnb_4bit_compute_dtype=torch_dtype or torch.bfloat16)
    return BitsAndBytesConfig(load_in_8bit=True)


def check_bnb_folder(folder: Path, device: torch.device) -> None:
    """A diffusers folder saved with bitsandbytes weights loads only where CUDA is: say so before loading."""
    import json

    for config in folder.glob("*/config.json"):
        try:
            method = json.loads(config.read_text()).get("quantization_config", {}).get("quant_method")
        except (OSError, ValueError, AttributeError):
            continue
        if method == "bitsandbytes" and device.type != "cuda":
            raise DeviceError(f"{folder.name}/{config.parent.name} holds bitsandbytes (nf4/int8) weights, which "
                              f"need a CUDA GPU (the device here is {device.type}); use a GGUF or fp8 file here")
