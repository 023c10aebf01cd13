"""Read an SR checkpoint with spandrel: which files are SR models, and one-line errors for those that fail."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import torch

from engine.errors import ModelNotFound
from engine.sr.spandrel_import import import_spandrel

SR_SUFFIXES = (".pth", ".pt", ".ckpt", ".safetensors")
_PICKLE_SUFFIXES = (".pth", ".pt", ".ckpt")


@dataclass(frozen=True)
class SRModel:
    """A loaded SR network (spandrel's descriptor) and what the engine needs to know about it."""

    descriptor: object  # spandrel.ImageModelDescriptor
    path: Path
    architecture: str  # spandrel's name, e.g. "ESRGAN", "SPAN"
    scale: int  # the model's own factor
    device: torch.device
    dtype: torch.dtype

    @property
    def name(self) -> str:
        return self.path.stem

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """(1, C, h, w) float in [0, 1] on the model's device and dtype -> (1, C, h·scale, w·scale)."""
        with torch.inference_mode():
            return self.descriptor(x)


def _describe(state: dict) -> str:
    """What a state dict holds, in a few words: its tensor count and a few of its keys."""
    keys = list(state)
    shown = ", ".join(keys[:4]) + (", ..." if len(keys) > 4 else "")
    return f"{len(keys)} tensors ({shown})" if keys else "no tensors"


def is_sr_checkpoint(path: Path) -> bool:
    """Whether `--model PATH` names a file for the SR path: any .pth/.pt/.ckpt, or a .safetensors whose keys
    are not a flow transformer's (those stay with engine.backends)."""
    if not path.is_file() or path.suffix.lower() not in SR_SUFFIXES:
        return False
    if path.suffix.lower() in _PICKLE_SUFFIXES:
        return True
    from engine.backends.registry import family_for_keys
    from engine.errors import UprezError
    from engine.models.store import safetensors_keys

    try:
        keys = safetensors_keys(path)
    except (OSError, ValueError, UnicodeDecodeError):
        return False  # unreadable: the flow loader says so in its own words
    try:
        family_for_keys(keys, str(path))
    except UprezError:
        return True
    return False


def pick_dtype(descriptor: object, device: torch.device, dtype: str = "auto") -> torch.dtype:
    """bf16 on CUDA where the architecture supports it, else fp16 where it does, else fp32; fp32 on the CPU."""
    if dtype not in ("auto", "float32", "fp32"):
        from engine.backends.loader import resolve_dtype

        wanted = resolve_dtype(dtype, device)
        supported = {torch.bfloat16: descriptor.supports_bfloat16, torch.float16: descriptor.supports_half}
        return wanted if supported.get(wanted, True) else torch.float32
    if dtype == "auto" and device.type == "cuda":
        if descriptor.supports_bfloat16 and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        if descriptor.supports_half:
            return torch.float16
    if dtype == "auto" and device.type == "mps" and descriptor.supports_half:
        return torch.float16
    return torch.float32


def read_descriptor(path: Path, device: torch.device | str = "cpu") -> object:
    """spandrel's descriptor for `path`, or ModelNotFound with one line naming the file and what it holds."""
    spandrel = import_spandrel()
    loader = spandrel.ModelLoader(device=torch.device(device))
    if not path.is_file():
        raise ModelNotFound(f"SR model not found: {path} does not exist")
    try:
        state = loader.load_state_dict_from_file(str(path))
    except Exception as exc:  # truncated zip, foreign pickle, not safetensors: several types
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ModelNotFound(f"{path.name}: not a readable model file ({type(exc).__name__}: {reason[:160]})") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelNotFound(f"{path.name}: holds no state dict of tensors (found {type(state).__name__})")
    try:
        descriptor = loader.load_from_state_dict(state)
    except spandrel.UnsupportedModelError:
        # A .safetensors reaches here only when no flow family matched its keys either (is_sr_checkpoint).
        kind = "neither a flow transformer Uprez knows nor" if path.suffix.lower() == ".safetensors" else "not"
        raise ModelNotFound(f"{path.name}: {kind} a known upscale architecture; found {_describe(state)}") from None
    except Exception as exc:  # a known architecture whose shapes do not fit (a broken or edited file)
        raise ModelNotFound(f"{path.name}: looks like an upscale model but does not load "
                            f"({type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''}); "
                            f"found {_describe(state)}") from None
    if not isinstance(descriptor, spandrel.ImageModelDescriptor):
        raise ModelNotFound(f"{path.name}: a {descriptor.architecture.name} model for "
                            f"{descriptor.purpose.lower()}, not an image upscaler")
    if descriptor.input_channels not in (1, 3) or descriptor.output_channels != descriptor.input_channels:
        raise ModelNotFound(f"{path.name}: a {descriptor.architecture.name} model with {descriptor.input_channels} "
                            f"input and {descriptor.output_channels} output channels; only RGB or grey models run")
    return descriptor


def load_sr_model(path: str | Path, *, device: str = "auto", dtype: str = "auto") -> SRModel:
    """Load an SR checkpoint on the device, in the precision its architecture supports there."""
    from engine.backends.loader import resolve_device

    torch_device = resolve_device(device)
    path = Path(path).expanduser()
    descriptor = read_descriptor(path)
    torch_dtype = pick_dtype(descriptor, torch_device, dtype)
    descriptor.to(torch_device).to(torch_dtype).eval()
    return SRModel(descriptor, path, descriptor.architecture.name, int(descriptor.scale), torch_device, torch_dtype)


_cache_lock = threading.Lock()
_cached: tuple[tuple[str, str, str], SRModel] | None = None


def get_sr_model(path: str | Path, *, device: str = "auto", dtype: str = "auto") -> SRModel:
    """`load_sr_model`, keeping the last one loaded (SR models are small; jobs often repeat one)."""
    global _cached
    key = (str(Path(path).expanduser().resolve()), device, dtype)
    with _cache_lock:
        if _cached is not None and _cached[0] == key:
            return _cached[1]
        model = load_sr_model(path, device=device, dtype=dtype)
        _cached = (key, model)
        return model
