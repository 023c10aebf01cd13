"""An isolated home, config folder and Hugging Face cache for each model-manager test."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # hub.py and cache_layouts.py beside this file


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """A home, config folder and Hugging Face cache of the test's own; returns them as a dict of paths."""
    paths = {"home": tmp_path / "home", "config": tmp_path / "config", "cache": tmp_path / "hf" / "hub",
             "hf_home": tmp_path / "hf"}
    for path in paths.values():
        path.mkdir(parents=True, exist_ok=True)
    monkeypatch.setenv("HOME", str(paths["home"]))  # no real ~/ComfyUI is found
    monkeypatch.setenv("UPREZ_CONFIG_DIR", str(paths["config"]))
    monkeypatch.setenv("HF_HOME", str(paths["hf_home"]))
    monkeypatch.setenv("HF_HUB_CACHE", str(paths["cache"]))
    for name in ("UPREZ_COMFYUI_DIRS", "UPREZ_MODEL_DIRS", "HF_TOKEN", "HF_HUB_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    return paths
