"""ModelRef.parse decides what a model path or name is, and the loader, the server and the manager agree with it."""

from __future__ import annotations

import numpy as np
import pytest
from safetensors.numpy import save_file

from engine.backends.registry import BUILTIN
from engine.errors import InvalidInput, ModelNotFound
from engine.models.ref import ModelRef
from engine.models.store import scan_folder
from engine.server.models import resolve, scan


@pytest.fixture
def shelf(tmp_path):
    """One of each kind of entry a model folder may hold, real files in their real formats."""
    from engine.testing.tiny_sr import save_tiny_sr

    diffusers = tmp_path / "flux-folder"
    diffusers.mkdir()
    (diffusers / "model_index.json").write_text('{"_class_name": "FluxPipeline"}')
    save_file({"double_blocks.0.img_attn.qkv.weight": np.zeros((4, 4), np.float32)},
              str(tmp_path / "flux-transformer.safetensors"))
    (tmp_path / "unet.gguf").write_bytes(b"GGUF")  # the kind is the suffix's; reading it is the loader's job
    sr = save_tiny_sr(tmp_path, "esrgan", 4)
    (tmp_path / "notes.txt").write_text("not a model")
    (tmp_path / "empty-folder").mkdir()
    return tmp_path, sr


def test_each_kind_is_told_apart(shelf):
    folder, sr = shelf
    assert ModelRef.parse("builtin") == ModelRef("builtin", "builtin", BUILTIN.weights())
    assert ModelRef.parse(str(BUILTIN.weights())).kind == "builtin"  # the shipped folder by its path
    assert ModelRef.parse(folder / "flux-folder").kind == "diffusers"
    assert ModelRef.parse(folder / "flux-transformer.safetensors").kind == "safetensors"
    assert ModelRef.parse(folder / "unet.gguf").kind == "gguf"
    assert ModelRef.parse(sr).kind == "sr"
    assert ModelRef.parse("black-forest-labs/FLUX.1-dev") == ModelRef("black-forest-labs/FLUX.1-dev", "repo")


@pytest.mark.parametrize(("name", "words"), [
    ("notes.txt", "is not a model"), ("empty-folder", "no model_index.json"), ("missing.safetensors", "does not exist"),
    ("a/b/c", "does not exist"),
])
def test_what_is_no_model_is_refused_in_one_line(shelf, name, words):
    folder, _ = shelf
    text = name if name.count("/") > 1 else str(folder / name)
    with pytest.raises(ModelNotFound, match=words) as refused:
        ModelRef.parse(text)
    assert "\n" not in str(refused.value)
    with pytest.raises(InvalidInput, match=words):  # the server says the same, as a bad request
        resolve(text, "builtin")


def test_the_server_list_and_the_manager_scan_use_the_same_kinds(shelf):
    folder, sr = shelf
    listed = {entry["name"]: entry["kind"] for entry in scan((folder,))}
    assert listed == {"flux-folder": "diffusers", "flux-transformer.safetensors": "safetensors", "unet.gguf": "gguf",
                      sr.name: "sr"}
    managed = {model.name: model.kind for model in scan_folder(folder, "here")}
    assert managed == {"flux-folder": "diffusers", "flux-transformer.safetensors": "safetensors"}  # what loads


def test_the_loader_refuses_an_sr_model_as_a_flow_model(shelf):
    from engine.backends.loader import load_backend

    _, sr = shelf
    with pytest.raises(ModelNotFound, match="is an upscale model"):
        load_backend(sr, device="cpu")
