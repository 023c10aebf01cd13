"""Every family's adapter against diffusers itself: our Euler loop over `backend.velocity` must land
where the stock pipeline's own denoising loop lands, from the same latents on the same sigmas."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from engine.backends.flux import FluxBackend
from engine.backends.packing import pack_latents, unpack_latents
from engine.backends.qwen_image import QwenImageBackend
from engine.backends.sd3 import SD3Backend
from engine.backends.z_image import ZImageBackend
from engine.sampler import euler
from engine.schedule import model_sigmas

FAMILIES = ["flux-dev", "flux-schnell", "sd3", "qwen-image", "z-image"]
BACKENDS = {"flux-dev": FluxBackend, "flux-schnell": FluxBackend, "sd3": SD3Backend,
            "qwen-image": QwenImageBackend, "z-image": ZImageBackend}
PACKED = {"flux-dev", "flux-schnell", "qwen-image"}  # these pipelines take and return 2x2-packed latents
# Options that make each stock pipeline run exactly one conditional model call per step, as we do here;
# schnell was trained with 256 T5 tokens, which our adapter uses and the stock pipeline must be told.
STOCK_OPTIONS = {
    "flux-dev": {"guidance_scale": 3.5},
    "flux-schnell": {"max_sequence_length": 256},
    "sd3": {"guidance_scale": 1.0},
    "qwen-image": {"true_cfg_scale": 1.0},
    "z-image": {"guidance_scale": 0.0},
}
PROMPT = "a photo of a cat, high detail"


@pytest.mark.parametrize("family", FAMILIES)
def test_loader_picks_the_family_and_geometry(family, tiny_backend):
    backend = tiny_backend(family)
    assert type(backend) is BACKENDS[family]
    assert backend.latent_multiple == 16


@pytest.mark.parametrize("family", FAMILIES)
def test_encode_decode_shapes(family, tiny_backend):
    backend = tiny_backend(family)
    pixels = torch.rand(1, 3, 64, 96) * 2 - 1
    latent = backend.encode(pixels)
    assert latent.shape == (1, 16, 8, 12) and latent.dtype == torch.float32
    assert backend.decode(latent).shape == (1, 3, 64, 96)


@pytest.mark.parametrize("family", FAMILIES)
def test_our_loop_reproduces_the_stock_pipeline(family, tiny_backend):
    backend = tiny_backend(family)
    pipe = backend.pipe
    steps, size = 3, 64
    latent_hw = size // backend.vae_scale
    x = torch.randn(1, 16, latent_hw, latent_hw, generator=torch.Generator().manual_seed(0))
    base = list(np.linspace(1.0, 1.0 / steps, steps))
    stock = pipe(prompt=PROMPT, height=size, width=size, num_inference_steps=steps, sigmas=base,
                 latents=pack_latents(x) if family in PACKED else x.clone(), output_type="latent",
                 **STOCK_OPTIONS[family]).images
    if family in PACKED:
        stock = unpack_latents(stock, latent_hw, latent_hw)

    # The stock pipelines shift with the actual token count; so do we, for this comparison only.
    sigmas = [*model_sigmas(steps, backend.shift_rule, backend.tokens_for(latent_hw, latent_hw)), 0.0]
    cond = backend.encode_prompt(PROMPT, cfg_scale=1.0)
    ours = euler(lambda z, s: backend.velocity(z, s, cond), x, sigmas)
    torch.testing.assert_close(ours, stock.float(), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("family", ["sd3", "qwen-image", "z-image"])
def test_cfg_runs_only_when_there_is_text_to_guide_by(family, tiny_backend):
    backend = tiny_backend(family)
    x = torch.randn(1, 16, 4, 4, generator=torch.Generator().manual_seed(1))
    assert backend.encode_prompt("", cfg_scale=5.0).negative is None  # nothing to contrast: no second call
    guided = backend.encode_prompt("a cat", "blurry", cfg_scale=5.0)
    plain = backend.encode_prompt("a cat", "blurry", cfg_scale=1.0)
    assert guided.negative is not None and plain.negative is None
    assert not torch.allclose(backend.velocity(x, 0.5, guided), backend.velocity(x, 0.5, plain))


def test_qwen_cfg_rescales_each_token_to_the_conditional_norm(tiny_backend):
    backend = tiny_backend("qwen-image")
    v, v_neg = torch.randn(1, 16, 4, 4), torch.randn(1, 16, 4, 4)
    combined = backend._combine_cfg(v, v_neg, 4.0)
    torch.testing.assert_close(pack_latents(combined).norm(dim=-1), pack_latents(v).norm(dim=-1))


def test_sd3_refuses_a_pass_beyond_its_position_table(tiny_backend):
    from engine.errors import InvalidInput

    backend = tiny_backend("sd3")
    too_big = backend.pipe.transformer.config.pos_embed_max_size * backend.patch_size + 2
    with pytest.raises(InvalidInput, match="SD3 takes at most"):
        backend.velocity(torch.zeros(1, 16, too_big, 8), 0.5, backend.encode_prompt(""))


@pytest.mark.parametrize("family", FAMILIES)
def test_each_family_upscales_end_to_end(family, tiny_backend):
    from engine import upscale

    image = np.random.default_rng(0).integers(0, 256, (24, 40, 3), dtype=np.uint8)
    first = upscale(image, backend=tiny_backend(family), scale=2, seed=3)
    assert first.shape == (48, 80, 3)
    assert np.array_equal(first, upscale(image, backend=tiny_backend(family), scale=2, seed=3))
