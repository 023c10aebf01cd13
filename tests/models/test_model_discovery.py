"""Models already on disk are found where the HF cache and ComfyUI keep them, and load from there."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
from cache_layouts import lay_out_as_comfyui, lay_out_as_hf_cache

from engine.backends.loader import load_backend
from engine.cli import main
from engine.errors import InvalidInput, UprezError
from engine.models import store as model_store
from engine.models.pull import pull

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


def _edited_copy(folder, target, edit):
    """A copy of a model folder whose model_index.json went through `edit(index) -> index`."""
    shutil.copytree(folder, target)
    index = target / "model_index.json"
    index.write_text(json.dumps(edit(json.loads(index.read_text()))))
    return target


@pytest.mark.parametrize("record", ["git clone", "_name_or_path", "link into a cache"])
def test_a_pull_of_a_model_comfyui_already_has_downloads_nothing(record, tiny_model, isolated, tmp_path,
                                                                    monkeypatch):
    """Only a folder that records which repo it holds counts: a `git clone` from huggingface.co, the
    "_name_or_path" diffusers may write, or a link into another Hugging Face cache's snapshot."""
    comfyui = tmp_path / "ComfyUI"
    repo_id = "black-forest-labs/FLUX.1-schnell"
    if record == "git clone":
        folder = lay_out_as_comfyui(tiny_model("flux-dev"), comfyui, "FLUX.1-schnell")
        subprocess.run(["git", "init", "-q", str(folder)], check=True)
        subprocess.run(["git", "-C", str(folder), "remote", "add", "origin", f"https://huggingface.co/{repo_id}"],
                       check=True)
    elif record == "_name_or_path":
        named = _edited_copy(tiny_model("flux-dev"), tmp_path / "named", lambda i: {**i, "_name_or_path": repo_id})
        folder = lay_out_as_comfyui(named, comfyui, "schnell-copy")
    else:
        snapshot = lay_out_as_hf_cache(tiny_model("flux-dev"), tmp_path / "other-cache", repo_id)
        folder = comfyui / "models" / "diffusers" / "FLUX.1-schnell"
        folder.parent.mkdir(parents=True)
        folder.symlink_to(snapshot, target_is_directory=True)
        folder = folder.resolve()
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


def test_a_component_cut_off_after_its_config_is_incomplete(tiny_model, isolated):
    """A download fetches a component's small config.json before its weights: config alone is not a component,
    or `pull` would say "already here" and the server would offer a model that cannot load."""
    snapshot = lay_out_as_hf_cache(tiny_model("flux-dev"), isolated["cache"], REPO)
    (snapshot / "transformer" / "diffusion_pytorch_model.safetensors").unlink()
    assert (snapshot / "transformer" / "config.json").is_file()
    [found] = model_store.discover(isolated["config"])
    assert not found.complete and found.missing == ("transformer",)
    assert model_store.find_local(REPO, [found]) is None
    from engine.server.models import catalogue

    assert REPO not in {m["id"] for m in catalogue(None, None, ())["models"]}


def test_a_shard_set_without_its_index_yet_counts_every_shard(tiny_model, isolated, tmp_path):
    """Shards can arrive before their index file: "-00001-of-00002" alone is half a component."""
    folder = shutil.copytree(tiny_model("flux-dev"), tmp_path / "sharded")
    weights = folder / "vae" / "diffusion_pytorch_model.safetensors"
    weights.rename(folder / "vae" / "diffusion_pytorch_model-00001-of-00002.safetensors")
    lay_out_as_hf_cache(folder, isolated["cache"], REPO)
    [found] = model_store.discover(isolated["config"])
    assert not found.complete and found.missing == ("vae",)
    shutil.copy(folder / "vae" / "diffusion_pytorch_model-00001-of-00002.safetensors",
                folder / "vae" / "diffusion_pytorch_model-00002-of-00002.safetensors")
    shutil.rmtree(isolated["cache"] / "models--test-org--tiny-flux")
    lay_out_as_hf_cache(folder, isolated["cache"], REPO)
    [found] = model_store.discover(isolated["config"])
    assert found.complete


def test_remove_refuses_a_name_two_models_share(tiny_model, isolated, capsys):
    for repo in ("org-a/tiny-flux", "org-b/tiny-flux"):
        lay_out_as_hf_cache(tiny_model("flux-dev"), isolated["cache"], repo)
    models = model_store.discover(isolated["config"])
    with pytest.raises(InvalidInput, match=r"'tiny-flux' could be any of 2 models: org-a/tiny-flux \(hf-cache\); "
                                           r"org-b/tiny-flux \(hf-cache\)\. Nothing was removed"):
        model_store.remove("tiny-flux", models)
    assert main(["models", "remove", "tiny-flux"]) == 2 and "could be any of 2 models" in capsys.readouterr().err
    assert {p.name for p in isolated["cache"].iterdir()} == {"models--org-a--tiny-flux", "models--org-b--tiny-flux"}
    assert model_store.remove("org-b/tiny-flux", models).id == "org-b/tiny-flux"
    assert model_store.remove("tiny-flux", model_store.discover(isolated["config"])).id == "org-a/tiny-flux"
    assert not any(isolated["cache"].iterdir())


def test_remove_through_a_link_is_refused_with_a_message(tiny_model, isolated, tmp_path, capsys):
    """A cache folder that links to another disk: deleting through the link could take more than this model."""
    lay_out_as_hf_cache(tiny_model("flux-dev"), tmp_path / "big-disk", REPO)
    target = tmp_path / "big-disk" / "models--test-org--tiny-flux"
    (isolated["cache"] / target.name).symlink_to(target, target_is_directory=True)
    models = model_store.discover(isolated["config"])
    with pytest.raises(UprezError, match="is a link to .*does not delete through links"):
        model_store.remove(REPO, models)
    assert main(["models", "remove", REPO]) == 1
    err = capsys.readouterr().err
    assert "does not delete through links" in err and "Traceback" not in err
    assert (target / "refs" / "main").is_file() and (isolated["cache"] / target.name).is_symlink()


def test_remove_that_the_disk_refuses_is_a_clear_error(tiny_model, isolated, capsys):
    """A folder that cannot be deleted (here an immutable one, as root cannot be denied by permissions)."""
    snapshot = lay_out_as_hf_cache(tiny_model("flux-dev"), isolated["cache"], REPO)
    locked = snapshot / "vae"
    if subprocess.run(["chattr", "+i", str(locked)], capture_output=True).returncode != 0:
        pytest.skip("chattr +i is not available here (needs root and a file system that supports it)")
    try:
        assert main(["models", "remove", REPO]) == 1
    finally:
        subprocess.run(["chattr", "-i", str(locked)], check=True)
    err = capsys.readouterr().err
    assert f"could not remove {REPO} from " in err and "Operation not permitted" in err
    assert "may be partly removed" in err and "Traceback" not in err


def test_an_empty_or_broken_model_index_does_not_break_the_listing(tiny_model, isolated, tmp_path, monkeypatch,
                                                                    capsys):
    """"x": [] in model_index.json is skipped like "x": [null, null]; a model_index.json that is not an object
    lists its folder as incomplete; neither stops `uprez models list` or GET /v1/models."""
    good = _edited_copy(tiny_model("flux-dev"), tmp_path / "good", lambda i: {**i, "feature_extractor": []})
    lay_out_as_hf_cache(good, isolated["cache"], REPO)
    comfyui = tmp_path / "ComfyUI"
    broken = lay_out_as_comfyui(tiny_model("flux-dev"), comfyui, "broken")
    (broken / "model_index.json").write_text("[1, 2]")
    monkeypatch.setenv("UPREZ_COMFYUI_DIRS", str(comfyui))
    found = {m.name: m for m in model_store.discover(isolated["config"])}
    assert found["tiny-flux"].complete
    assert not found["broken"].complete and found["broken"].missing == ("model_index.json",)
    from engine.server.models import catalogue

    listed = {m["id"] for m in catalogue(None, None, ())["models"]}
    assert REPO in listed and str(broken) not in listed
    assert main(["models", "list"]) == 0
    out = capsys.readouterr().out
    assert f"{REPO}  " in out and f"{broken}  " in out and "INCOMPLETE, missing model_index.json" in out


@pytest.mark.parametrize(("settings", "key"), [({"comfyui": "/opt/ComfyUI"}, '"comfyui"'),
                                               ({"model_dirs": ["/models", 3]}, '"model_dirs"'),
                                               (["/opt/ComfyUI"], "JSON object")])
def test_models_json_values_must_be_lists_of_paths(settings, key, isolated, capsys):
    """A single string would be read letter by letter, each letter a folder; say what is wrong instead."""
    path = isolated["config"] / "models.json"
    path.write_text(json.dumps(settings))
    with pytest.raises(InvalidInput, match=rf"{path}.*{key}"):
        model_store.discover(isolated["config"])
    assert main(["models", "list"]) == 2 and key in capsys.readouterr().err
