"""The tiny random models load back through the path users take and run in the stock diffusers pipelines."""

from __future__ import annotations

import json

import diffusers
import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from engine.testing.tiny_models import (
    FAMILIES,
    build_tiny_pipeline,
    main,
    save_single_file_transformer,
)

# Scheduler settings of the real checkpoints, which the tiny folders must carry unchanged.
SCHEDULERS = {
    "flux-dev": {"use_dynamic_shifting": True, "base_shift": 0.5, "max_shift": 1.15,
                 "base_image_seq_len": 256, "max_image_seq_len": 4096, "shift": 3.0},
    "flux-schnell": {"use_dynamic_shifting": False, "shift": 1.0},
    "sd3": {"use_dynamic_shifting": False, "shift": 3.0},
    "qwen-image": {"use_dynamic_shifting": True, "base_shift": 0.5, "max_shift": 0.9,
                   "base_image_seq_len": 256, "max_image_seq_len": 8192, "shift_terminal": 0.02,
                   "time_shift_type": "exponential"},
    "z-image": {"use_dynamic_shifting": False, "shift": 3.0},
    "chroma": {"use_dynamic_shifting": True, "base_shift": 0.5, "max_shift": 1.15,
               "base_image_seq_len": 256, "max_image_seq_len": 4096, "shift": 3.0},
    "flux2-klein": {"use_dynamic_shifting": True, "base_shift": 0.5, "max_shift": 1.15,
                    "base_image_seq_len": 256, "max_image_seq_len": 4096, "shift": 3.0},
}
QWEN_PREFIX = ("<|im_start|>system\nDescribe the image by detailing the color, shape, size, texture, "
               "quantity, text, spatial relationships of the objects and background:<|im_end|>\n"
               "<|im_start|>user\n")


@pytest.fixture(scope="session")
def loaded(tiny_model):
    """`loaded(family)`: the saved folder reloaded with the family's text-to-image class, once per session."""
    pipes = {}

    def get(family: str):
        if family not in pipes:
            cls = getattr(diffusers, FAMILIES[family].pipeline_class)
            pipes[family] = cls.from_pretrained(tiny_model(family))
            pipes[family].set_progress_bar_config(disable=True)
        return pipes[family]

    return get


def _tokenizers(pipe) -> list:
    return [c for name, c in pipe.components.items() if name.startswith("tokenizer") and c is not None]


@pytest.mark.parametrize("family", FAMILIES)
def test_folder_is_a_real_diffusers_checkpoint(family, tiny_model):
    folder = tiny_model(family)
    index = json.loads((folder / "model_index.json").read_text())
    assert index["_class_name"] == FAMILIES[family].pipeline_class
    assert index["transformer"] == ["diffusers", FAMILIES[family].transformer_class]
    assert list(folder.rglob("*.safetensors")) and not list(folder.rglob("*.bin"))
    config = json.loads((folder / "scheduler" / "scheduler_config.json").read_text())
    assert SCHEDULERS[family].items() <= config.items()
    # The generic entry point users call resolves to the family's text-to-image class.
    generic = diffusers.DiffusionPipeline.from_pretrained(folder)
    assert type(generic).__name__ == FAMILIES[family].pipeline_class


@pytest.mark.parametrize("family", FAMILIES)
def test_stock_pipeline_runs_end_to_end(family, loaded):
    pipe = loaded(family)
    assert type(pipe).__name__ == FAMILIES[family].pipeline_class
    image = pipe(prompt="a photo of a cat, high detail", height=64, width=64, num_inference_steps=2,
                 output_type="np", generator=torch.Generator().manual_seed(0)).images
    assert image.shape == (1, 64, 64, 3)
    assert np.isfinite(image).all() and 0 <= image.min() <= image.max() <= 1


@pytest.mark.parametrize("family", FAMILIES)
def test_vae_downscales_by_eight(family, loaded):
    pipe = loaded(family)
    assert pipe.vae_scale_factor == 8
    qwen = family == "qwen-image"  # a video VAE: (B, C, frames, H, W)
    pixels = torch.rand(1, 3, 1, 64, 64) if qwen else torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        latent = pipe.vae.encode(pixels * 2 - 1).latent_dist.mode()
    assert latent.shape == ((1, 16, 1, 8, 8) if qwen else (1, 16, 8, 8))
    if qwen:
        assert len(pipe.vae.config.latents_mean) == len(pipe.vae.config.latents_std) == 16


@pytest.mark.parametrize("family", FAMILIES)
def test_tokenizers_reload_and_take_any_prompt(family, loaded):
    fresh = _tokenizers(build_tiny_pipeline(family))
    for tokenizer, built in zip(_tokenizers(loaded(family)), fresh, strict=True):
        assert type(tokenizer) is type(built)
        for prompt in ["", "a photo of a cat, high detail", "Ünïcödé ÆØ 🙂\ttabs\nand lines"]:
            ids = tokenizer(prompt).input_ids
            assert ids == built(prompt).input_ids
            assert all(0 <= i < len(tokenizer) for i in ids)
        if "CLIP" in type(tokenizer).__name__:
            assert tokenizer.model_max_length == 77


def test_qwen_template_prefix_is_as_long_as_the_pipeline_drops(loaded):
    pipe = loaded("qwen-image")
    # The pipeline cuts this many hidden states off the front: our prefix must be exactly that long.
    assert len(pipe.tokenizer(QWEN_PREFIX).input_ids) == pipe.prompt_template_encode_start_idx == 34


def test_z_image_chat_template(loaded):
    tokenizer = loaded("z-image").tokenizer
    messages = [{"role": "user", "content": "a cat"}]
    # The call ZImagePipeline makes.
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True,
                                         enable_thinking=True)
    assert text == "<|im_start|>user\na cat<|im_end|>\n<|im_start|>assistant\n"
    tokens = tokenizer.convert_ids_to_tokens(tokenizer(text).input_ids)
    assert tokens[0] == "<|im_start|>" and tokens.count("<|im_end|>") == 1


@pytest.mark.parametrize("family", ["flux-dev", "sd3", "qwen-image", "z-image"])
def test_single_file_transformer_loads_with_the_same_weights(family, tiny_model, loaded, tmp_path):
    folder = tiny_model(family)
    checkpoint = save_single_file_transformer(folder, tmp_path / "transformer.safetensors")
    cls = getattr(diffusers, FAMILIES[family].transformer_class)
    model = cls.from_single_file(str(checkpoint), config=str(folder), subfolder="transformer")
    expected = loaded(family).transformer.state_dict()
    assert model.state_dict().keys() == expected.keys() == load_file(checkpoint).keys()
    for key, value in model.state_dict().items():
        assert torch.equal(value, expected[key]), key


def test_weights_depend_only_on_the_seed():
    rng_before = torch.random.get_rng_state()
    a, b, c = (build_tiny_pipeline("flux-schnell", seed).transformer.state_dict() for seed in (0, 0, 1))
    assert torch.equal(torch.random.get_rng_state(), rng_before)  # building leaves the caller's RNG alone
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_unknown_family_is_refused():
    with pytest.raises(ValueError, match="choose from flux-dev"):
        build_tiny_pipeline("sdxl")


def test_command_line_saves_a_folder_and_prints_it(tmp_path, capsys):
    main([str(tmp_path / "m"), "--family", "flux-schnell", "--seed", "1"])
    assert capsys.readouterr().out.strip() == str(tmp_path / "m")
    assert json.loads((tmp_path / "m" / "model_index.json").read_text())["_class_name"] == "FluxPipeline"
