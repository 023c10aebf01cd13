"""ComfyUI's quantized transformer files: found, listed with their format and base, paired with a base on disk
(never downloaded), and run by the real server."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from cache_layouts import lay_out_as_comfyui, lay_out_as_hf_cache

from engine.cli import main
from engine.imagefile import read_image
from engine.models import store as model_store
from engine.testing.quantized_files import COMFY_PREFIX, save_fp8, save_gguf


def _upscale(*args) -> int:
    return main(["upscale", *map(str, args)])


@pytest.fixture
def comfyui(tiny_model, isolated, tmp_path, monkeypatch):
    """A ComfyUI folder as users have one: a FLUX.1-dev diffusers model, a Q8_0 GGUF of it in models/unet, an fp8
    Z-Image transformer (whose family has no base here) in models/diffusion_models, and loose VAE and text
    encoder files."""
    root = tmp_path / "ComfyUI"
    base = lay_out_as_comfyui(tiny_model("flux-dev"), root, "tiny-flux-dev")
    models = root / "models"
    for sub in ("unet", "clip", "text_encoders"):
        (models / sub).mkdir(parents=True, exist_ok=True)
    gguf = save_gguf(base, models / "unet" / "flux1-dev-Q8_0.gguf", "Q8_0")
    fp8 = save_fp8(tiny_model("z-image"), models / "diffusion_models" / "z_image_turbo_fp8_e4m3fn.safetensors",
                   names="z-image-original", prefix=COMFY_PREFIX)
    shutil.copy(next((base / "vae").glob("*.safetensors")), models / "vae" / "ae.safetensors")
    shutil.copy(next((base / "text_encoder_2").glob("*.safetensors")), models / "text_encoders" / "t5xxl.safetensors")
    shutil.copy(next((base / "text_encoder").glob("*.safetensors")), models / "clip" / "clip_l.safetensors")
    monkeypatch.setenv("UPREZ_COMFYUI_DIRS", str(root))
    return {"root": root, "base": base, "gguf": gguf, "fp8": fp8}


def test_comfyui_quantized_files_are_listed_with_format_and_base(comfyui, isolated, capsys):
    found = {m.name: m for m in model_store.discover(isolated["config"])}
    gguf, fp8 = found["flux1-dev-Q8_0.gguf"], found["z_image_turbo_fp8_e4m3fn.safetensors"]
    assert (gguf.kind, gguf.family, gguf.storage) == ("gguf", "flux", "GGUF Q8_0")
    assert (fp8.kind, fp8.family, fp8.storage) == ("safetensors", "z-image", "fp8 e4m3fn")
    assert {n: m.kind for n, m in found.items() if m.kind in ("vae", "text-encoder")} == {
        "ae.safetensors": "vae", "t5xxl.safetensors": "text-encoder", "clip_l.safetensors": "text-encoder"}
    assert main(["models", "list"]) == 0
    listing = capsys.readouterr().out
    assert f"VAE and text encoders from {comfyui['base']}" in listing  # the GGUF's pairing
    assert "no z-image base on this machine: `uprez models pull Tongyi-MAI/Z-Image-Turbo`" in listing
    from engine.server.models import catalogue, resolve

    listed = {m["id"]: m["kind"] for m in catalogue(None, None, ())["models"]}
    assert listed[str(comfyui["gguf"])] == "gguf"
    assert "vae" not in listed.values() and "text-encoder" not in listed.values()  # a job cannot name a VAE
    assert resolve(str(comfyui["gguf"]), None) == str(comfyui["gguf"])


def test_a_gguf_in_comfyui_pairs_with_the_base_beside_it(comfyui, sample_png, tmp_path, capsys):
    paired, given = tmp_path / "paired.png", tmp_path / "given.png"
    assert _upscale(sample_png, "-o", paired, "--model", comfyui["gguf"], "-q") == 0, capsys.readouterr().err
    assert _upscale(sample_png, "-o", given, "--model", comfyui["gguf"], "--base", comfyui["base"], "-q") == 0
    assert np.array_equal(read_image(paired), read_image(given))
    out = tmp_path / "z.png"
    capsys.readouterr()
    assert _upscale(sample_png, "-o", out, "--model", comfyui["fp8"], "-q") != 0  # Z-Image has no base here
    err = capsys.readouterr().err.strip()
    assert "none is on this machine" in err and "\n" not in err and not out.exists()


def test_the_base_comes_from_the_hf_cache_offline_and_must_match_the_guidance(tiny_model, isolated, sample_png,
                                                                             tmp_path, capsys):
    dev_gguf = save_gguf(tiny_model("flux-dev"), tmp_path / "dev.gguf", "Q4_0")
    # Only schnell is cached: a dev (guidance-distilled) transformer must not be paired with it.
    lay_out_as_hf_cache(tiny_model("flux-schnell"), isolated["cache"], "black-forest-labs/FLUX.1-schnell")
    out = tmp_path / "out.png"
    assert _upscale(sample_png, "-o", out, "--model", dev_gguf, "-q") != 0
    assert "`uprez models pull black-forest-labs/FLUX.1-dev`" in capsys.readouterr().err
    lay_out_as_hf_cache(tiny_model("flux-dev"), isolated["cache"], "black-forest-labs/FLUX.1-dev")
    for extra in ([], ["--base", "black-forest-labs/FLUX.1-dev"]):
        out.unlink(missing_ok=True)
        assert _upscale(sample_png, "-o", out, "--model", dev_gguf, "-q", *extra) == 0, capsys.readouterr().err
        assert read_image(out).shape[:2] == (150, 128)


def test_the_real_server_runs_a_job_on_a_gguf_file(comfyui, serve_process, sample_png, tmp_path, capsys):
    """`uprez serve` as users start it; a job names the GGUF file (paired with the base beside it in ComfyUI)
    and gets the same pixels as the command line; a GGUF of another architecture fails the job in one line."""
    import gguf as gguf_package

    from plugin.uprez_client import Client, JobFailed
    from plugin.uprez_client.discovery import read_token

    cli_out = tmp_path / "cli.png"
    assert _upscale(sample_png, "-o", cli_out, "--model", comfyui["gguf"], "-q") == 0
    engine = serve_process("--model", "builtin")
    client = Client(engine.url, read_token({"UPREZ_CONFIG_DIR": str(engine.config_dir)}))
    job = client.submit_file(sample_png, model=str(comfyui["gguf"]), scale=2, seed=0)
    client.wait(job)
    data, meta = client.result(job)
    (tmp_path / "server.png").write_bytes(data)
    assert np.array_equal(read_image(tmp_path / "server.png"), read_image(cli_out))

    llama = tmp_path / "llama.gguf"
    writer = gguf_package.GGUFWriter(str(llama), arch="llama")
    writer.add_tensor("blk.0.attn_q.weight", np.zeros((32, 32), np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    job = client.submit_file(sample_png, model=str(llama), scale=2)
    with pytest.raises(JobFailed, match="GGUF of architecture 'llama'") as failed:
        client.wait(job)
    assert "\n" not in str(failed.value)
