"""What one model file on disk holds, from its header alone (no torch, no weights read): family and storage.

The model manager lists ComfyUI's transformer files (`models/unet`, `models/diffusion_models`) with this, and
its loose VAE and text-encoder files (`models/vae`, `models/clip`, `models/text_encoders`) as components.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path

# safetensors dtype names -> how `uprez models list` names the storage
_STORAGE = {"F8_E4M3": "fp8 e4m3fn", "F8_E5M2": "fp8 e5m2", "BF16": "bf16", "F16": "fp16", "F32": "fp32"}
COMPONENT_FOLDERS = {"vae": "vae", "clip": "text-encoder", "text_encoders": "text-encoder"}


@dataclass(frozen=True)
class FileSummary:
    keys: tuple[str, ...]
    storage: str  # "GGUF Q8_0", "fp8 e4m3fn", "bf16", ...


def safetensors_dtypes(path: Path) -> dict[str, str]:
    """Tensor name -> dtype name from a .safetensors header (8-byte length + JSON)."""
    with path.open("rb") as f:
        (length,) = struct.unpack("<Q", f.read(8))
        if length > 100 * 2**20:
            raise ValueError("header too large")
        header = json.loads(f.read(length))
    return {key: str(value.get("dtype")) for key, value in header.items() if key != "__metadata__"}


def summarize(path: Path) -> FileSummary:
    """Key names and the storage of the largest share of the weights (a file's few norms in F32 aside)."""
    if path.suffix == ".gguf":
        from gguf import GGUFReader

        tensors = GGUFReader(str(path)).tensors
        counts: dict[str, int] = {}
        for tensor in tensors:
            counts[tensor.tensor_type.name] = counts.get(tensor.tensor_type.name, 0) + int(tensor.n_elements)
        return FileSummary(tuple(t.name for t in tensors), "GGUF " + max(counts, key=counts.get) if counts else "GGUF")
    dtypes = safetensors_dtypes(path)
    names = [name for name in dtypes.values() if name in _STORAGE]
    fp8 = [name for name in names if name.startswith("F8_")]
    main = max(set(fp8 or names), key=(fp8 or names).count) if names else "?"
    return FileSummary(tuple(dtypes), _STORAGE.get(main, main.lower()))


def transformer_family(summary: FileSummary) -> str | None:
    """The flow family of a transformer file, or None (SD1.5/SDXL, LoRAs, VAEs...)."""
    from engine.backends.registry import family_for_keys

    try:
        return family_for_keys(list(summary.keys), "file").name
    except Exception:  # not a family Uprez drives
        return None
