"""Load a flow model from a repo id, a local diffusers folder or a single .safetensors checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from engine.backends.base import FlowBackend
from engine.backends.registry import GUIDANCE_KEY_MARKERS, Family, family_for_keys, family_for_pipeline
from engine.backends.text_encoders import deferred_text_components
from engine.builtin.backend import WEIGHTS, is_builtin_folder, load_builtin
from engine.errors import DeviceError, ModelNotFound
from engine.memory_modes import apply_mode, check_mode, choose_mode, free_device_bytes, make_plan
from engine.memory_plan import MemoryPlan
from engine.settings import BUILTIN_MODEL

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


def _looks_like_path(source: str) -> bool:
    return source.startswith((".", "/", "~")) or "\\" in source or source.endswith((".safetensors", ".gguf")) \
        or source.count("/") != 1


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


def _checkpoint_keys(path: Path) -> list[str]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return list(f.keys())
    except Exception as exc:  # a truncated or foreign file; safetensors raises several types
        raise ModelNotFound(f"{path} is not a readable .safetensors checkpoint: {exc}") from exc


def _load_single_file(path: Path, base: str | None, dtype: torch.dtype):
    """A transformer-only checkpoint: its weights, plus VAE and text encoders from `base`."""
    import diffusers

    keys = _checkpoint_keys(path)
    family = family_for_keys(keys, str(path))
    guided = any(marker in key for key in keys for marker in GUIDANCE_KEY_MARKERS)
    base = base or (family.default_base_guided if guided and family.default_base_guided else family.default_base)
    transformer_cls = getattr(diffusers, family.transformer_class)
    try:
        transformer = transformer_cls.from_single_file(
            str(path), config=base, subfolder="transformer", dtype=dtype
        )
        pipe = _pipeline_class(family).from_pretrained(base, transformer=transformer, dtype=dtype,
                                                       **deferred_text_components(base))
    except (OSError, ValueError) as exc:
        raise ModelNotFound(
            f"could not load the rest of the {family.name} model (VAE, text encoders) from {base!r} "
            f"for the checkpoint {path.name}: {exc}. Pass --base with a local diffusers folder or a "
            "downloaded repo id of the same family"
        ) from exc
    return family, pipe


def _load_pretrained(source: str, where: str, dtype: torch.dtype):
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
    try:
        pipe = _pipeline_class(family).from_pretrained(source, dtype=dtype, **deferred_text_components(source))
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
) -> FlowBackend:
    """Load the built-in model or any supported family; `base` completes a single-file checkpoint. `memory` is
    auto, gpu, model-offload, group-offload or sequential (`offload=True` is the older model-offload)."""
    torch_device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, torch_device)
    requested = memory or ("model-offload" if offload and torch_device.type != "cpu" else "auto")
    check_mode(requested, torch_device)  # before a load of minutes
    text = str(source)
    path = Path(text).expanduser()
    if text == BUILTIN_MODEL or (path.is_dir() and is_builtin_folder(path)):
        folder = WEIGHTS if text == BUILTIN_MODEL else path
        return load_builtin(folder, source=text, device=torch_device, dtype=torch_dtype)
    quiet_libraries()
    # Planned from the config files on the meta device, before any weight is read (the CPU has one mode).
    memory_plan = None if torch_device.type == "cpu" else make_plan(text, base, torch_device, torch_dtype)
    if path.is_file():
        if path.suffix == ".gguf":
            raise ModelNotFound(f"{path.name}: GGUF checkpoints are not supported yet; use a .safetensors file")
        if path.suffix != ".safetensors":
            raise ModelNotFound(f"{path} is not a model: expected a diffusers folder or a .safetensors file")
        family, pipe = _load_single_file(path, base, torch_dtype)
    elif path.is_dir():
        family, pipe = _load_pretrained(str(path), str(path), torch_dtype)
    elif _looks_like_path(text):
        raise ModelNotFound(f"model not found: {text} does not exist")
    else:
        family, pipe = _load_pretrained(text, repr(text), torch_dtype)

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
