"""Uprez engine: progressive flow-matching upscaling with pretrained diffusers models.

`import engine` stays light (no torch): the window and the model manager use its image files and settings
without loading the model stack. `upscale` and `get_backend` import it on first use.
"""

from typing import Any

from engine.progress import Cancelled, CancelToken, ProgressEvent
from engine.settings import HIGH_DETAIL_PROMPT, ModelSpec, UpscaleSettings

__version__ = "0.1.0"

__all__ = [
    "HIGH_DETAIL_PROMPT",
    "CancelToken",
    "Cancelled",
    "ModelSpec",
    "ProgressEvent",
    "UpscaleSettings",
    "get_backend",
    "upscale",
]
_LAZY = {"get_backend": "engine.api", "upscale": "engine.api"}


def __getattr__(name: str) -> Any:
    """`engine.upscale` and `engine.get_backend`, imported (with torch) when first asked for (PEP 562)."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'engine' has no attribute {name!r}")
