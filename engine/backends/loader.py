"""Load a flow model from a repo id, a local diffusers folder or a single .safetensors checkpoint."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from engine.backends.base import FlowBackend
from engine.backends.registry import BUILTIN, GUIDANCE_KEY_MARKERS, Family, family_for_keys, family_for_pipeline
from engine.backends.text_encoders import deferred_text_components
from engine.errors import DeviceError, ModelNotFound
from engine.memory_modes import apply_mode, check_mode, choose_mode, free_device_bytes, make_plan
from engine.memory_plan import MemoryPlan
from engine.models.ref import ModelRef

DTYPES = {
    "float32": torch.float32, "fp32": torch.float32,
    "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
    "float16": torch.float16, "fp16": torch.float16,
}


def resolve_device(device: str = "auto") -> torch.device:
    """'auto' picks CUDA, then Apple MPS, then the CPU; an explicit device must exist here."""
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError as exc:
        raise DeviceError(f"unknown device {device!r}; use auto, cpu, cuda, cuda:N or mps") from exc
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise DeviceError(f"device {device!r} was asked for but this machine has no CUDA GPU; use --device cpu")
    if resolved.type == "mps" and not torch.backends.mps.is_available():
        raise DeviceError(f"device {device!r} was asked for but Apple MPS is not available; use --device cpu")
    if resolved.type not in ("cpu", "cuda", "mps"):
        raise DeviceError(f"device {device!r} is not supported; use auto, cpu, cuda or mps")
    return resolved


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """'auto' is bfloat16 on CUDA, float16 on MPS and float32 on the CPU (where half precision is slow)."""
    if dtype == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float16 if device.type == "mps" else torch.float32
    if dtype not in DTYPES:
        raise DeviceError(f"unknown dtype {dtype!r}; use auto, float32, bfloat16 or float16")
    return DTYPES[dtype]


def _read_index(folder: Path) -> str:
    index = folder / "model_index.json"
    if not index.is_file():
        raise ModelNotFound(
            f"{folder} is a folder but not a diffusers model (no model_index.json); "
            "point --model at the folder that holds model_index.json, or at a .safetensors file"
        )
    try:
        return str(json.loads(index.read_text())["_class_name"])
    except (ValueError, KeyError) as exc:
        raise ModelNotFound(f"{index} is not a valid diffusers model index: {exc}") from exc


def quiet_libraries() -> None:
    """Silence per-component loading bars and optional-dependency notices; our own progress is enough."""
    import diffusers
    import transformers

    diffusers.utils.logging.set_verbosity_error()
    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


def _pipeline_class(family: Family) -> type:
    import diffusers

    return getattr(diffusers, family.pipeline_class)


def _pair(path: Path, base: str | None) -> tuple[Any, Family, str]:
    """A transformer-only file (full precision, fp8 or GGUF), its family, and the local base that completes it."""
    from engine.backends.pairing import resolve_base
    from engine.backends.quantized import read_checkpoint

    checkpoint = read_checkpoint(path)  # refuses, in one line, what diffusers could not load
    family = family_for_keys(list(checkpoint.keys), str(path))
    guided = any(marker in key for key in checkpoint.keys for marker in GUIDANCE_KEY_MARKERS)
    return checkpoint, family, resolve_base(family, guided, base, path)  # on this machine only: never a download


def _load_single_file(checkpoint: Any, family: Family, folder: str, dtype: torch.dtype, device: torch.device,
                      quantize: str | None = None):
    """The file's transformer, with VAE and text encoders (deferred) from the base folder."""
    import diffusers

    from engine.backends.quantized import load_transformer

    path = checkpoint.path
    transformer_cls = getattr(diffusers, family.transformer_class)
    try:
        transformer = load_transformer(checkpoint, transformer_cls, folder, dtype, device, quantize)
        pipe = _pipeline_class(family).from_pretrained(folder, transformer=transformer, dtype=dtype,
                                                       local_files_only=True, **deferred_text_components(folder))
    except (OSError, ValueError, RuntimeError) as exc:
        if isinstance(exc, torch.OutOfMemoryError):
            raise
        raise ModelNotFound(
            f"could not load {checkpoint.description} checkpoint {path.name} with the {family.name} model at "
            f"{folder}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}. Pass --base with a "
            "local diffusers folder of the same model"
        ) from exc
    return family, pipe


def _load_pretrained(source: str, where: str, dtype: torch.dtype, device: torch.device | None = None,
                     quantize: str | None = None):
    from diffusers import DiffusionPipeline

    if Path(source).is_dir():
        class_name = _read_index(Path(source))
    else:
        try:
            class_name = DiffusionPipeline.load_config(source)["_class_name"]
        except (OSError, ValueError) as exc:
            raise ModelNotFound(
                f"model {source!r} is neither a local folder nor a repo id in the Hugging Face cache, and "
                f"could not be downloaded ({type(exc).__name__}); check the name, log in with "
                "`hf auth login` for gated models, or pass a local path"
            ) from exc
    family = family_for_pipeline(class_name, where)
    extra = {}
    if Path(source).is_dir():
        from engine.backends.quantized import check_bnb_folder

        check_bnb_folder(Path(source), device or torch.device("cpu"))
    if quantize:  # only the transformer: it is most of the memory, and the text encoders may be cached away
        import diffusers

        from engine.backends.quantized import bnb_config

        config = bnb_config(quantize, dtype, device or torch.device("cpu"))
        extra["transformer"] = getattr(diffusers, family.transformer_class).from_pretrained(
            source, subfolder="transformer", quantization_config=config, dtype=dtype)
    try:
        pipe = _pipeline_class(family).from_pretrained(source, dtype=dtype, **deferred_text_components(source),
                                                       **extra)
    except (OSError, ValueError) as exc:
        raise ModelNotFound(f"could not load {where}: {exc}") from exc
    return family, pipe


def load_backend(
    source: str | Path,
    *,
    device: str = "auto",
    dtype: str = "auto",
    offload: bool = False,
    base: str | None = None,
    memory: str | None = None,
    quantize: str | None = None,
) -> FlowBackend:
    """Load the built-in model or any supported family; `base` completes a single-file checkpoint. `memory` is
    auto, gpu, model-offload, group-offload or sequential (`offload=True` is the older model-offload);
    `quantize` ("nf4" or "int8") quantizes a full-precision transformer with bitsandbytes (CUDA only)."""
    torch_device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, torch_device)
    requested = memory or ("model-offload" if offload and torch_device.type != "cpu" else "auto")
    check_mode(requested, torch_device)  # before a load of minutes
    text = str(source)
    ref = ModelRef.parse(text)
    if ref.kind == "builtin":
        return BUILTIN.load(ref.path, source=text, device=torch_device, dtype=torch_dtype)
    if ref.kind == "sr":
        raise ModelNotFound(f"{ref.path} is an upscale model, not a flow model: run it on its own (--model) or "
                            "before a flow model (--upsampler)")
    quiet_libraries()
    if quantize and torch_device.type != "cuda":
        from engine.backends.quantized import bnb_config

        bnb_config(quantize, torch_dtype, torch_device)  # refuses in one line before anything loads
    single = None
    if ref.kind in ("safetensors", "gguf"):
        single = _pair(ref.path, base)
        base = single[2]  # the plan below and the load take the file's rest from the same folder
    # Planned from the config files on the meta device, before any weight is read (the CPU has one mode).
    memory_plan = None if torch_device.type == "cpu" else make_plan(text, base, torch_device, torch_dtype)
    if single is not None:
        family, pipe = _load_single_file(*single, torch_dtype, torch_device, quantize)
    elif ref.kind == "diffusers":
        family, pipe = _load_pretrained(str(ref.path), str(ref.path), torch_dtype, torch_device, quantize)
    else:  # a repo id: from the Hugging Face cache, else downloaded
        family, pipe = _load_pretrained(text, repr(text), torch_dtype, torch_device, quantize)

    pipe.set_progress_bar_config(disable=True)
    backend = family.backend_class()(pipe, source=text, device=torch_device, dtype=torch_dtype)
    _place(backend, memory_plan, requested, torch_device)
    return backend


def _place(backend: FlowBackend, memory_plan: MemoryPlan | None, requested: str, device: torch.device) -> None:
    """Apply the memory mode (accelerate's hooks also cover our direct transformer/VAE calls) and say where the
    text encoders will run and whether they may stay loaded."""
    free = free_device_bytes(device)
    mode = choose_mode(requested, memory_plan, device, free)
    apply_mode(backend.pipe, mode, device)
    backend.memory_mode, backend.memory_plan, backend.memory_free = mode, memory_plan, free
    encoders = getattr(backend, "text_encoders", None)
    if encoders is not None and memory_plan is not None and device.type != "cpu":
        if not memory_plan.text_on_device(mode, free):
            encoders.device = torch.device("cpu")  # they would not fit beside what this mode keeps on the device
        encoders.keep = memory_plan.keep_text_encoders(mode, free)
