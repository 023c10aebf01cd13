"""Uprez engine: progressive flow-matching upscaling with pretrained diffusers models."""

from engine.api import get_backend, upscale
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
