"""Models already on disk are found where the HF cache and ComfyUI keep them, and load from there."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
from cache_layouts import lay_out_as_comfyui, lay_out_as_hf_cache

from engine import model_store
from engine.backends.loader import load_backend
from engine.errors import InvalidInput
from engine.model_pull import pull

REPO = "test-org/tiny-flux"


def test_a_model_in_the_hf_cache_is_found_and_loads_from_there(tiny_model, isolated):
    from huggingface_hub import scan_cache_dir

    snapshot = lay_out_as_hf_cache(tiny_model("flux-dev"), isolated["cache"], REPO)
    repos = {r.repo_id: r for r in scan_cache_dir(isolated["cache"]).repos}  # huggingface_hub agrees on the layout
    assert REPO in repos
    [found] = model_store.discover(isolated["config"])
    assert (found.id, found.where, found.kind, found.complete) == (REPO, "hf-cache", "diffusers", True)
    assert found.path == snapshot and found.size == repos[REPO].size_on_disk
    backend = load_backend(found.path, device="cpu")
    assert backend.family == "flux"


def test_the_server_takes_a_cached_repo_id_and_loads_it_offline(tiny_model, isolated):
    """The engine's own path: GET /v1/models lists the repo id, a job naming it passes the check at submit time,
    and the loader reads it from the cache with downloads switched off."""
    lay_out_as_hf_cache(tiny_model("flux-dev"), isolated["cache"], REPO)
    from engine.server.models import catalogue

    assert REPO in {m["id"] for m in catalogue(None, None, ())["models"]}
    script = ("from engine.server.models import resolve; from engine.backends.loader import load_backend; "
              f"source = resolve({REPO!r}, None); print(source, load_backend(source, device='cpu').family)")
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}  # a download attempt would fail the load
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split()[-2:] == [REPO, "flux"]


def test_an_interrupted_download_is_listed_as_incomplete_and_not_offered(tiny_model, isolated):
    snapshot = lay_out_as_hf_cache(tiny_model("flux-dev"), isolated["cache"], REPO)
    shutil.rmtree(snapshot / "transformer")
    [found] = model_store.discover(isolated["config"])
    assert not found.complete and found.missing == ("transformer",)
    from engine.server.models import catalogue

    assert REPO not in {m["id"] for m in catalogue(None, None, ())["models"]}


def test_comfyui_models_are_found_and_load_from_there(tiny_model, isolated, tmp_path, monkeypatch):
    from engine.testing.tiny_models import save_single_file_transformer

    comfyui = tmp_path / "ComfyUI"
    folder = lay_out_as_comfyui(tiny_model("flux-dev"), comfyui, "tiny-flux")
    unet = comfyui / "models" / "diffusion_models"
    checkpoint = save_single_file_transformer(folder, unet / "tiny-flux-t.safetensors")
    import torch
    from safetensors.torch import save_file

    save_file({"model.diffusion_model.input_blocks.0.0.weight": torch.zeros(2)},  # an SD1.5-style checkpoint
              str(comfyui / "models" / "checkpoints" / "sd15.safetensors"))
    monkeypatch.setenv("UPREZ_COMFYUI_DIRS", str(comfyui))
    found = {m.name: m for m in model_store.discover(isolated["config"])}
    assert set(found) == {"tiny-flux", "tiny-flux-t.safetensors"}  # the SD1.5 checkpoint is not a flow model
    diffusers, single = found["tiny-flux"], found["tiny-flux-t.safetensors"]
    assert (diffusers.where, diffusers.kind, diffusers.id) == ("comfyui", "diffusers", str(folder))
    assert (single.kind, single.family, single.id) == ("safetensors", "flux", str(checkpoint))
    assert load_backend(diffusers.id, device="cpu").family == "flux"
    assert load_backend(single.id, device="cpu", base=diffusers.id).family == "flux"
    from engine.server.models import catalogue, resolve

    assert {diffusers.id, single.id} <= {m["id"] for m in catalogue(None, None, ())["models"]}
    assert resolve(diffusers.id, None) == diffusers.id


def test_comfyui_folder_can_be_set_in_models_json(tiny_model, isolated, tmp_path):
    comfyui = tmp_path / "somewhere" / "ComfyUI"
    lay_out_as_comfyui(tiny_model("flux-dev"), comfyui, "tiny-flux")
    (isolated["config"] / "models.json").write_text(json.dumps({"comfyui": [str(comfyui / "models")]}))
    assert [m.name for m in model_store.discover(isolated["config"])] == ["tiny-flux"]
    (isolated["config"] / "models.json").write_text("{not json")
    with pytest.raises(InvalidInput, match="models.json is not valid JSON"):
        model_store.discover(isolated["config"])


def test_a_pull_of_a_model_comfyui_already_has_downloads_nothing(tiny_model, isolated, tmp_path, monkeypatch):
    comfyui = tmp_path / "ComfyUI"
    folder = lay_out_as_comfyui(tiny_model("flux-dev"), comfyui, "FLUX.1-schnell")
    monkeypatch.setenv("UPREZ_COMFYUI_DIRS", str(comfyui))
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # any network use would fail the pull
    elsewhere = model_store.discover(isolated["config"])
    messages = []

    class Out:
        def write(self, text):
            messages.append(text)

    assert pull("black-forest-labs/FLUX.1-schnell", elsewhere=elsewhere, out=Out()) == folder
    assert "already here" in "".join(messages)
    assert not any(isolated["cache"].iterdir())


def test_remove_deletes_from_the_hf_cache_only(tiny_model, isolated, tmp_path, monkeypatch):
    lay_out_as_hf_cache(tiny_model("flux-dev"), isolated["cache"], REPO)
    comfyui = tmp_path / "ComfyUI"
    folder = lay_out_as_comfyui(tiny_model("flux-dev"), comfyui, "tiny-flux")
    monkeypatch.setenv("UPREZ_COMFYUI_DIRS", str(comfyui))
    models = model_store.discover(isolated["config"])
    with pytest.raises(InvalidInput, match="only removes what is in the Hugging Face cache"):
        model_store.remove(str(folder), models)
    removed = model_store.remove(REPO, models)
    assert removed.id == REPO and not (isolated["cache"] / "models--test-org--tiny-flux").exists()
    assert folder.is_dir()
    with pytest.raises(InvalidInput, match="no model 'nope/nope'"):
        model_store.remove("nope/nope", models)
