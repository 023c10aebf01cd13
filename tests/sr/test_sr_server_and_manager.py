"""Upscale models through the real engine server and the model manager (`uprez models list / recommend`)."""

from __future__ import annotations

import numpy as np
import pytest

from engine.cli import main
from plugin.uprez_client import Client


@pytest.fixture(scope="module")
def sr_folder(sr_file, config_dir):
    """Uprez's own SR folder in the session's config dir, with two tiny models in it."""
    folder = config_dir / "upscale_models"
    folder.mkdir(exist_ok=True)
    (folder / "2x-compact.pth").write_bytes(sr_file("compact", 2).read_bytes())
    (folder / "4x-swin.safetensors").write_bytes(sr_file("swinir", 4, ".safetensors").read_bytes())
    yield folder
    for name in ("2x-compact.pth", "4x-swin.safetensors"):  # the session's other engines list no SR models
        (folder / name).unlink()


def test_the_engine_lists_sr_models_apart_from_flow_models(server, sr_folder):
    models = Client(server.url).models()["models"]
    kinds = {m["name"]: m["kind"] for m in models}
    assert kinds["2x-compact.pth"] == "sr" and kinds["4x-swin.safetensors"] == "sr"
    assert kinds["builtin"] == "builtin" and "diffusers" in kinds.values()


def test_a_job_names_an_sr_model_and_gets_its_exact_size_and_depth(server, sr_folder):
    client = Client(server.url)
    rng = np.random.default_rng(0)
    pixels = (rng.random((20, 30, 4)) * 65535).astype("<u2")
    data, info = client.upscale_raw(pixels.tobytes(), 30, 20, "RGBA", 16, scale=3,
                                    model=str(sr_folder / "2x-compact.pth"))
    out = np.frombuffer(data, "<u2").reshape(60, 90, 4)
    assert out[:, :, :3].std() > 1000


def test_a_flow_job_takes_an_upsampler_by_name(server, sr_folder):
    client = Client(server.url)
    pixels = (np.random.default_rng(1).random((16, 16, 4)) * 255).astype(np.uint8)
    data, _ = client.upscale_raw(pixels.tobytes(), 16, 16, "RGBA", 8, scale=2, upsampler="2x-compact")
    assert len(data) == 32 * 32 * 4


def test_models_list_shows_architecture_scale_and_size(sr_folder, capsys):
    assert main(["models", "list"]) == 0
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if "2x-compact" in x)
    assert "RealESRGAN Compact 2x" in line and "KiB" in line and "uprez" in line
    assert "SwinIR 4x" in next(x for x in out.splitlines() if "4x-swin" in x)


def test_models_recommend_has_a_licence_column_and_names_the_non_commercial_one(capsys):
    assert main(["models", "recommend"]) == 0
    out = capsys.readouterr().out
    assert "licence" in out and "commercial use" in out
    ultrasharp = next(x for x in out.splitlines() if x.startswith("ultrasharp"))
    assert "CC-BY-NC-SA-4.0" in ultrasharp and " NO " in ultrasharp
    assert "Apache-2.0" in next(x for x in out.splitlines() if x.startswith("omnisr-x2"))


def test_pull_of_an_sr_model_puts_one_file_into_uprez_s_folder(config_dir, monkeypatch, capsys):
    # A fake only for what cannot run here: the Hub download (no network). The routing and folder are real.
    import huggingface_hub

    asked = []

    def fake_download(repo, filename, local_dir):
        asked.append((repo, filename))
        path = local_dir / filename
        path.write_bytes(b"weights")
        return str(path)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    assert main(["models", "pull", "omnisr-x2"]) == 0
    assert asked == [("Acly/Omni-SR", "OmniSR_X2_DIV2K.safetensors")]
    assert (config_dir / "upscale_models" / "OmniSR_X2_DIV2K.safetensors").is_file()
    (config_dir / "upscale_models" / "OmniSR_X2_DIV2K.safetensors").unlink()


def test_pull_of_the_non_commercial_model_says_so_and_fetches_the_safetensors(config_dir, monkeypatch, capsys):
    # The Hub download is faked (no network); the licence notice and the file chosen are real.
    import huggingface_hub

    asked = []

    def fake_download(repo, filename, local_dir):
        asked.append((repo, filename))
        (local_dir / filename).write_bytes(b"weights")
        return str(local_dir / filename)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    assert main(["models", "pull", "ultrasharp"]) == 0
    assert asked == [("Kim2091/UltraSharp", "4x-UltraSharp.safetensors")]  # the author's own repo
    assert "CC-BY-NC-SA-4.0, NON-COMMERCIAL use only" in capsys.readouterr().err
    (config_dir / "upscale_models" / "4x-UltraSharp.safetensors").unlink()
    assert main(["models", "pull", "omnisr-x2"]) == 0
    assert "NON-COMMERCIAL" not in capsys.readouterr().err
    (config_dir / "upscale_models" / "OmniSR_X2_DIV2K.safetensors").unlink()


def test_recommend_marks_a_model_installed_in_the_other_format():
    from engine.sr.catalog import table

    line = next(x for x in table({"4x-UltraSharp.pth"}).splitlines() if x.startswith("ultrasharp"))
    assert "installed" in line
    assert "installed" not in next(x for x in table(set()).splitlines() if x.startswith("ultrasharp"))



def test_sr_folders_are_comfyui_upscale_models_chainner_and_uprez_s_own(tmp_path, sr_file):
    from engine.sr.find import resolve_upsampler, scan_sr, sr_folders

    comfy = tmp_path / "ComfyUI"
    (comfy / "models" / "upscale_models").mkdir(parents=True)
    model = comfy / "models" / "upscale_models" / "4x_NMKD-Tiny.pth"
    model.write_bytes(sr_file("esrgan", 4).read_bytes())
    config = tmp_path / "config"
    folders = sr_folders(config, {"UPREZ_COMFYUI_DIRS": str(comfy)})
    assert (comfy / "models" / "upscale_models", "comfyui") in folders
    assert (config / "upscale_models", "uprez") in folders and any(w == "chainner" for _, w in folders)
    assert [m.path for m in scan_sr(folders)] == [model.resolve()]
    # A flow transformer .safetensors in the same folder is not taken for an SR model.
    assert resolve_upsampler("lanczos") is None and resolve_upsampler(str(model)) == model.resolve()


def test_an_unknown_upsampler_is_refused_at_submit(server, sr_folder):
    from plugin.uprez_client import UprezClientError

    pixels = bytes(16 * 16 * 4)
    with pytest.raises(UprezClientError, match="upsampler 'no-such-model' was not found"):
        Client(server.url).submit_raw(pixels, 16, 16, "RGBA", 8, scale=2, upsampler="no-such-model")


def test_the_front_ends_choices_tell_the_kinds_apart_and_pair_sr_with_each_flow_model():
    from plugin.uprez_client.options import job_params, model_choices, split_choice

    listing = {"models": [{"id": "/m/flux", "name": "flux", "kind": "diffusers", "default": True},
                          {"id": "builtin", "name": "builtin", "kind": "builtin"},
                          {"id": "/sr/4x.pth", "name": "4x.pth", "kind": "sr"}]}
    choices = dict(model_choices(listing))
    assert list(choices)[0].startswith("Built-in flow model")
    assert choices["Flow model: flux (engine default)"] == "/m/flux"
    assert split_choice(choices["SR model: 4x.pth (on its own)"]) == ("/sr/4x.pth", None)
    refine = split_choice(choices["SR model 4x.pth, then refine with flux"])
    assert refine == ("/m/flux", "/sr/4x.pth")
    assert split_choice(choices["SR model 4x.pth, then refine with the built-in model"]) == ("builtin", "/sr/4x.pth")
    params = job_params(2, model=refine[0], upsampler=refine[1])
    assert (params["model"], params["upsampler"]) == ("/m/flux", "/sr/4x.pth")
    assert split_choice("typed/repo-id") == ("typed/repo-id", None) and split_choice("") == (None, None)


def test_an_engine_started_with_an_sr_model_runs_it_for_jobs_that_name_none(start_server, sr_file):
    engine = start_server(model=str(sr_file("span", 2)))
    client = Client(engine.url)
    pixels = (np.random.default_rng(2).random((12, 10, 4)) * 255).astype(np.uint8)
    data, _ = client.upscale_raw(pixels.tobytes(), 10, 12, "RGBA", 8, scale=4)
    out = np.frombuffer(data, np.uint8).reshape(48, 40, 4)
    assert out[:, :, :3].std() > 10 and client.health()["model"] == str(sr_file("span", 2).resolve())


def test_an_upsampler_with_an_sr_model_is_refused_at_submit(server, sr_folder):
    from plugin.uprez_client import UprezClientError

    with pytest.raises(UprezClientError, match="upsampler goes with a flow model"):
        Client(server.url).submit_raw(bytes(16 * 16 * 4), 16, 16, "RGBA", 8, scale=2,
                                      model=str(sr_folder / "2x-compact.pth"), upsampler="2x-compact")
