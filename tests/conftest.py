"""Shared fixtures: tiny random models of every family, built once per session and saved as real folders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

# Tiny models gain nothing from threads, and on a busy 2-core machine threads that wait on each other
# made the suite ten times slower.
torch.set_num_threads(1)

SAMPLE = Path(__file__).resolve().parent.parent / "engine" / "data" / "sample.jpg"


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    """`tiny_model("flux-dev") -> Path` of a saved diffusers folder with random weights, cached per session."""
    from engine.testing.tiny_models import save_tiny_model

    root = tmp_path_factory.mktemp("tiny-models")
    built: dict[str, Path] = {}

    def get(family: str) -> Path:
        if family not in built:
            built[family] = save_tiny_model(family, root / family)
        return built[family]

    return get


@pytest.fixture(scope="session")
def tiny_backend(tiny_model):
    """`tiny_backend("flux-dev")`: the saved model loaded through the user's loader, on the CPU."""
    from engine.backends.loader import load_backend

    loaded = {}

    def get(family: str):
        if family not in loaded:
            loaded[family] = load_backend(tiny_model(family), device="cpu")
        return loaded[family]

    return get


@pytest.fixture
def sample_image() -> Image.Image:
    """The bundled sample photo, shrunk so tiny-model runs stay fast."""
    with Image.open(SAMPLE) as image:
        return image.convert("RGB").resize((64, 75), Image.Resampling.LANCZOS)


@pytest.fixture
def sample_png(tmp_path, sample_image) -> Path:
    path = tmp_path / "sample.png"
    sample_image.save(path)
    return path


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(np.float64), b.astype(np.float64)
    mse = np.mean((a - b) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)
