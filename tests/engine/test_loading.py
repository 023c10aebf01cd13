"""Loading models the ways users do: a repo id from the Hugging Face cache, a folder, a single file."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from engine import upscale
from engine.backends.loader import load_backend
from engine.backends.registry import family_for_keys
from engine.errors import ModelNotFound, UnknownModelFamily


def _as_hub_cache(folder, cache, repo_id):
    """Lay a saved model out as huggingface_hub's cache does for a downloaded repo."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    commit = "0" * 40
    shutil.copytree(folder, repo / "snapshots" / commit)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)


def _cli(*args, env):
    return subprocess.run([sys.executable, "-m", "engine.cli", *map(str, args)], capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=300)


def test_repo_id_loads_from_the_hub_cache_offline(tiny_model, sample_png, tmp_path):
    cache = tmp_path / "hub"
    _as_hub_cache(tiny_model("flux-schnell"), cache, "uprez-test/tiny-flux-schnell")
    env = {"HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}
    out = tmp_path / "out.png"
    done = _cli("upscale", sample_png, "-o", out, "--model", "uprez-test/tiny-flux-schnell", "-q", env=env)
    assert done.returncode == 0, done.stderr
    missing = _cli("upscale", sample_png, "-o", tmp_path / "x.png", "--model", "uprez-test/not-there", env=env)
    assert missing.returncode == 1
    assert "neither a local folder nor a repo id in the Hugging Face cache" in missing.stderr
    assert "Traceback" not in missing.stderr


@pytest.mark.parametrize("family", ["flux-dev", "qwen-image", "flux2-klein"])
def test_single_file_checkpoint_gives_the_same_result_as_its_folder(family, tiny_model, tmp_path):
    from engine.testing.tiny_models import save_single_file_transformer

    folder = tiny_model(family)
    checkpoint = save_single_file_transformer(folder, tmp_path / "transformer.safetensors")
    from_file = load_backend(checkpoint, device="cpu", base=str(folder))
    from_folder = load_backend(folder, device="cpu")
    assert type(from_file) is type(from_folder)
    image = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    assert np.array_equal(upscale(image, backend=from_file), upscale(image, backend=from_folder))


def test_truncated_checkpoint_is_refused_clearly(tiny_model, tmp_path):
    from engine.testing.tiny_models import save_single_file_transformer

    checkpoint = save_single_file_transformer(tiny_model("flux-dev"), tmp_path / "t.safetensors")
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(checkpoint.read_bytes()[:100])
    with pytest.raises(ModelNotFound, match="not a readable .safetensors"):
        load_backend(broken, device="cpu")


@pytest.mark.parametrize(("keys", "family"), [
    (["double_blocks.0.img_mod.lin.weight", "single_blocks.0.linear1.weight", "guidance_in.in_layer.weight"], "flux"),
    (["transformer_blocks.0.attn.to_q.weight", "single_transformer_blocks.0.proj_out.weight"], "flux"),
    (["model.diffusion_model.joint_blocks.0.x_block.attn.qkv.weight"], "sd3"),
    (["pos_embed.proj.weight", "transformer_blocks.0.attn.add_q_proj.weight"], "sd3"),
    (["txt_norm.weight", "transformer_blocks.0.img_mod.1.weight"], "qwen-image"),
    (["cap_embedder.0.weight", "noise_refiner.0.attention.to_q.weight"], "z-image"),
    # FLUX.2, original (BFL/ComfyUI) and diffusers names: it has FLUX.1's block names too.
    (["model.diffusion_model.double_blocks.0.img_attn.qkv.weight",
      "model.diffusion_model.single_stream_modulation.lin.weight"], "flux2"),
    (["single_transformer_blocks.0.attn.to_qkv_mlp_proj.weight", "double_stream_modulation_img.linear.weight"],
     "flux2"),
    (["distilled_guidance_layer.in_proj.weight", "double_blocks.0.img_attn.qkv.weight"], "chroma"),
])
def test_single_file_family_is_recognised_from_key_names(keys, family):
    assert family_for_keys(keys, "ckpt").name == family


def test_foreign_checkpoint_is_named_as_unsupported():
    with pytest.raises(UnknownModelFamily, match="supported family"):
        family_for_keys(["model.diffusion_model.input_blocks.0.0.weight"], "sdxl.safetensors")
