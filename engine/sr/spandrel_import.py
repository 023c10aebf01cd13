"""Import spandrel without torchvision.

spandrel lists torchvision as a dependency, but only two of its architectures use it, both outside SR:
LaMa (inpainting: `rotate`, `InterpolationMode`) and RestoreFormer (face restoration: `normalize`). They import
it when spandrel's registry is built, so `import spandrel` fails without it. PyPI's torchvision wheel is built
against CUDA torch and fails to import beside the CPU wheel ("operator torchvision::nms does not exist"), and
a torchvision that is present but broken also breaks transformers' image processors. So Uprez installs
spandrel with `--no-deps` (scripts/setup.sh, the installer) and, when torchvision cannot be imported, lends
spandrel a stand-in for the three names just while it imports. The stand-in is removed from `sys.modules`
afterwards, so nothing else ever sees a torchvision; calling it (a LaMa or RestoreFormer model) raises.
"""

from __future__ import annotations

import sys
import types
from typing import Any

_STAND_IN = ("torchvision", "torchvision.transforms", "torchvision.transforms.functional")


class _Missing:
    """Any name spandrel imports from torchvision: usable as a default value, failing when called."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attr: str) -> _Missing:
        return _Missing(f"{self._name}.{attr}")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise ImportError(f"torchvision.{self._name} is needed by this model (LaMa / RestoreFormer, not an "
                          "upscale model), and torchvision is not installed")


def _functional_stand_in() -> types.ModuleType:
    module = types.ModuleType("torchvision.transforms.functional")
    module.__getattr__ = _Missing  # type: ignore[attr-defined]  # PEP 562: every name is a _Missing
    return module


def _torchvision_works() -> bool:
    try:
        import torchvision.transforms.functional  # noqa: F401
    except Exception:  # missing (ImportError) or built for another torch (RuntimeError)
        for name in _STAND_IN:
            sys.modules.pop(name, None)
        return False
    return True


INSTALL_HINT = "pip install --no-deps 'spandrel>=0.4.1,<0.5' einops"


def import_spandrel() -> types.ModuleType:
    """The spandrel module, imported with a temporary torchvision stand-in where the real one cannot load."""
    if "spandrel" in sys.modules:
        return sys.modules["spandrel"]
    import importlib.util

    if importlib.util.find_spec("spandrel") is None:
        from engine.errors import ModelNotFound

        raise ModelNotFound(f"upscale models need the spandrel package, which is not installed; run: {INSTALL_HINT}")
    if _torchvision_works():
        import spandrel

        return spandrel
    functional = _functional_stand_in()
    transforms = types.ModuleType("torchvision.transforms")
    transforms.functional = functional  # type: ignore[attr-defined]
    root = types.ModuleType("torchvision")
    root.transforms = transforms  # type: ignore[attr-defined]
    sys.modules.update(zip(_STAND_IN, (root, transforms, functional), strict=True))
    try:
        import spandrel
    finally:
        for name in _STAND_IN:
            sys.modules.pop(name, None)
    return spandrel
