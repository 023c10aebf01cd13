"""Tiny random SR models of six architectures, saved in their published key layouts once per session."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def sr_file(tmp_path_factory):
    """`sr_file("span", 4, ".safetensors") -> Path` of a saved tiny model, cached per session."""
    from engine.testing.tiny_sr import save_tiny_sr

    root = tmp_path_factory.mktemp("tiny-sr")
    built = {}

    def get(arch: str, scale: int = 4, suffix: str = ".pth"):
        key = (arch, scale, suffix)
        if key not in built:
            # ESRGAN's .pth as Real-ESRGAN publishes it: the weights under "params_ema".
            wrap = "params_ema" if arch == "esrgan" and suffix == ".pth" else None
            built[key] = save_tiny_sr(root / suffix.strip("."), arch, scale, suffix=suffix, wrap=wrap)
        return built[key]

    return get
