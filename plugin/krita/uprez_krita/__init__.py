"""Uprez for Krita: upscale a layer or a selection with the local Uprez engine; the result lands as a new layer.

Scripting: `uprez_krita.upscale(document, scale=2.0, target="resize", selection_only=False, wait=True,
**params)` (see api.py). Inside Krita, importing this package registers the menu actions. Qt is loaded
only when a job or the dialog needs it, so the pure modules import anywhere.
"""

from __future__ import annotations

from typing import Any


def upscale(document: Any, scale: float = 2.0, target: str = "resize", selection_only: bool = False,
            wait: bool = True, **params: Any) -> Any:
    from .api import upscale as run

    return run(document, scale, target, selection_only, wait, **params)


upscale.__doc__ = "See uprez_krita.api.upscale."


def __getattr__(name: str) -> Any:
    if name in ("UpscaleJob", "UpscaleFailed", "UpscaleCancelled"):
        from . import job

        return getattr(job, name)
    raise AttributeError(name)


__all__ = ["UpscaleCancelled", "UpscaleFailed", "UpscaleJob", "upscale"]

try:
    from krita import Krita
except ImportError:  # outside Krita: the pure modules and tests
    Krita = None

if Krita is not None and Krita.instance() is not None:
    from .extension import UprezExtension

    Krita.instance().addExtension(UprezExtension(Krita.instance()))
