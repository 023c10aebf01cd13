"""Every family's adapter against diffusers itself: our Euler loop over `backend.velocity` must land
where the stock pipeline's own denoising loop lands, from the same latents on the same sigmas, with
and without CFG; and in bfloat16 the transformer must get exactly the inputs the pipeline gives it."""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np
import pytest
import torch

from engine.backends.base import Conditioning
from engine.backends.chroma import ChromaBackend
from engine.backends.flux import FluxBackend
from engine.backends.flux2 import Flux2Backend, patchify, unpatchify
from engine.backends.loader import load_backend
from engine.backends.packing import pack_latents, unpack_latents
from engine.backends.qwen_image import QwenImageBackend
from engine.backends.sd3 import SD3Backend
from engine.backends.z_image import ZImageBackend
from engine.errors import InvalidInput
from engine.sampler import euler
from engine.schedule import model_sigmas

FAMILIES = ["flux-dev", "flux-schnell", "sd3", "qwen-image", "z-image", "flux2-klein", "chroma"]
CFG_FAMILIES = ["sd3", "qwen-image", "z-image", "chroma"]
BACKENDS = {"flux-dev": FluxBackend, "flux-schnell": FluxBackend, "sd3": SD3Backend,
            "qwen-image": QwenImageBackend, "z-image": ZImageBackend, "flux2-klein": Flux2Backend,
            "chroma": ChromaBackend}
PACKED = {"flux-dev", "flux-schnell", "qwen-image", "chroma"}  # these pipelines take and return 2x2-packed latents
# Options that make each stock pipeline run exactly one conditional model call per step, as we do here;
# schnell was trained with 256 T5 tokens, which our adapter uses and the stock pipeline must be told.
STOCK_OPTIONS = {
    "flux-dev": {"guidance_scale": 3.5},
    "flux-schnell": {"max_sequence_length": 256},
    "sd3": {"guidance_scale": 1.0},
    "qwen-image": {"true_cfg_scale": 1.0},
    "z-image": {"guidance_scale": 0.0},
    "flux2-klein": {},  # step-distilled: the pipeline never runs CFG
    "chroma": {"guidance_scale": 1.0},
}
PROMPT = "a photo of a cat, high detail"
NEGATIVE = "blurry, low quality"
CFG_SCALE = 3.0
# The same guidance in each pipeline's own terms: Z-Image's g is pos + g·(pos - neg), i.e. our scale - 1.
STOCK_CFG_OPTIONS = {
    "sd3": {"guidance_scale": CFG_SCALE},
    "qwen-image": {"true_cfg_scale": CFG_SCALE},
    "z-image": {"guidance_scale": CFG_SCALE - 1.0},
    "chroma": {"guidance_scale": CFG_SCALE},
}
LOOP_CASES = [(family, False) for family in FAMILIES] + [(family, True) for family in CFG_FAMILIES]
LOOP_IDS = [f"{family}-{'cfg' if guided else 'plain'}" for family, guided in LOOP_CASES]


@pytest.fixture(scope="module")
def bf16_backend(tiny_model):
    """`bf16_backend("sd3")`: the tiny model loaded in bfloat16, where the dtype conventions show."""
    loaded = {}

    def get(family: str):
        if family not in loaded:
            loaded[family] = load_backend(tiny_model(family), device="cpu", dtype="bfloat16")
        return loaded[family]

    return get


def _attach_text_encoders(backend) -> None:
    """The stock pipeline encodes its own prompt: give it the text encoders our loader leaves out until needed."""
    if backend.text_encoders is not None and not backend.text_encoders.attached:
        backend.text_encoders.load()


def _to_pipeline_layout(family: str, x: torch.Tensor) -> torch.Tensor:
    if family == "flux2-klein":  # the pipeline takes normalised latents patchified to (B, 4C, h/2, w/2)
        return patchify(x)
    return pack_latents(x) if family in PACKED else x.clone()


def _from_pipeline_layout(family: str, x: torch.Tensor, latent_hw: int) -> torch.Tensor:
    if family == "flux2-klein" and x.ndim == 3:  # the transformer's tokens: (B, h/2 · w/2, 4C)
        return unpatchify(x.transpose(1, 2).reshape(x.shape[0], -1, latent_hw // 2, latent_hw // 2))
    return unpack_latents(x, latent_hw, latent_hw) if family in PACKED else x


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


@pytest.mark.parametrize(("family", "guided"), LOOP_CASES, ids=LOOP_IDS)
def test_our_loop_reproduces_the_stock_pipeline(family, guided, tiny_backend):
    backend = tiny_backend(family)
    steps, size = 3, 64
    latent_hw = size // backend.vae_scale
    x = torch.randn(1, 16, latent_hw, latent_hw, generator=torch.Generator().manual_seed(0))
    if guided:
        options = {**STOCK_CFG_OPTIONS[family], "negative_prompt": NEGATIVE}
        cond = backend.encode_prompt(PROMPT, NEGATIVE, cfg_scale=CFG_SCALE)
        assert cond.negative is not None and cond.cfg_scale == CFG_SCALE
    else:
        options = STOCK_OPTIONS[family]
        cond = backend.encode_prompt(PROMPT, cfg_scale=1.0)
    _attach_text_encoders(backend)
    stock = backend.pipe(prompt=PROMPT, height=size, width=size, num_inference_steps=steps,
                         sigmas=list(np.linspace(1.0, 1.0 / steps, steps)), output_type="latent",
                         latents=_to_pipeline_layout(family, x), **options).images

    # The stock pipelines shift with the actual token count; so do we, for this comparison only.
    sigmas = [*model_sigmas(steps, backend.shift_rule, backend.tokens_for(latent_hw, latent_hw)), 0.0]
    ours = euler(lambda z, s: backend.velocity(z, s, cond), x, sigmas)
    stock = _from_pipeline_layout(family, stock, latent_hw).float()
    if family == "flux2-klein":  # its "latent" output is the raw VAE latent, denormalised and unpatchified
        stock = backend._normalise(stock)
    torch.testing.assert_close(ours, stock, atol=1e-4, rtol=1e-4)


def _record_calls(module: torch.nn.Module) -> tuple[list[dict[str, Any]], Any]:
    """Every forward call's arguments by parameter name, whether passed by position or keyword."""
    signature = inspect.signature(module.forward)
    calls: list[dict[str, Any]] = []

    def hook(_module, args, kwargs):
        calls.append(dict(signature.bind(*args, **kwargs).arguments))

    return calls, module.register_forward_pre_hook(hook, with_kwargs=True)


def _assert_same(ours: Any, stock: Any, name: str) -> None:
    if isinstance(stock, torch.Tensor):
        assert isinstance(ours, torch.Tensor), name
        # Also checks the dtype: a timestep rounded to bfloat16 where the pipeline keeps float32 fails here.
        torch.testing.assert_close(ours, stock, rtol=1e-6, atol=1e-6, msg=lambda m: f"{name}: {m}")
    elif isinstance(stock, (list, tuple)):
        assert isinstance(ours, (list, tuple)) and len(ours) == len(stock), name
        for i, (a, b) in enumerate(zip(ours, stock, strict=True)):
            _assert_same(a, b, f"{name}[{i}]")
    else:
        assert ours == stock, name


# FLUX's adapter passes bf16(sigma); FluxPipeline passes bf16(bf16(1000·sigma) / 1000): one bf16 step apart.
@pytest.mark.parametrize("family", FAMILIES)
def test_transformer_gets_the_stock_pipelines_inputs_in_bfloat16(family, bf16_backend):
    backend = bf16_backend(family)
    pipe = backend.pipe
    _attach_text_encoders(backend)
    latent_hw = 8
    x = torch.randn(1, 16, latent_hw, latent_hw, generator=torch.Generator().manual_seed(2))
    calls, handle = _record_calls(pipe.transformer)
    try:
        # Step 2's shifted sigma is one bfloat16 cannot hold, and where Qwen's bf16(bf16(1000·sigma) / 1000)
        # differs from bf16(sigma): any deviation from the pipeline's timestep arithmetic shows.
        pipe(prompt=PROMPT, height=64, width=64, num_inference_steps=3, sigmas=[1.0, 0.75, 0.3],
             output_type="latent", latents=_to_pipeline_layout(family, x).to(pipe.transformer.dtype),
             **STOCK_OPTIONS[family])
        stock = calls[1]
        # Feed our adapter the very latent and sigma the pipeline's second step had.
        sigma = float(pipe.scheduler.sigmas[1])
        if family == "z-image":
            x_step = torch.stack(stock["x"]).squeeze(2)
        else:
            x_step = _from_pipeline_layout(family, stock["hidden_states"], latent_hw)
        calls.clear()
        backend.velocity(x_step.float(), sigma, backend.encode_prompt(PROMPT, cfg_scale=1.0))
    finally:
        handle.remove()
    ignored = {"attention_kwargs", "joint_attention_kwargs", "return_dict"}
    for name in (calls[0].keys() | stock.keys()) - ignored:
        _assert_same(calls[0].get(name), stock.get(name), name)


@pytest.mark.parametrize("family", CFG_FAMILIES)
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
    backend = tiny_backend("sd3")
    limit = backend.pipe.transformer.config.pos_embed_max_size
    too_big = limit * backend.patch_size + 2
    most = limit * backend.patch_size * backend.vae_scale
    with pytest.raises(InvalidInput, match=f"SD3 takes at most {most}x{most} pixels"):
        backend.velocity(torch.zeros(1, 16, too_big, 8), 0.5, backend.encode_prompt(""))


@pytest.mark.parametrize("family", FAMILIES)
def test_each_family_upscales_end_to_end(family, tiny_backend):
    from engine import upscale

    image = np.random.default_rng(0).integers(0, 256, (24, 40, 3), dtype=np.uint8)
    first = upscale(image, backend=tiny_backend(family), scale=2, seed=3)
    assert first.shape == (48, 80, 3)
    assert np.array_equal(first, upscale(image, backend=tiny_backend(family), scale=2, seed=3))


def test_flux2_dev_guidance_path_reproduces_the_stock_pipeline():
    """FLUX.2 dev: Klein's adapter with dev's distilled guidance embedding, against Flux2Pipeline's own loop.

    Dev's text encoder is Mistral 3 behind a Pixtral processor, which needs torchvision (not a dependency here),
    so both sides get the same precomputed prompt embeddings; everything after the text encoder is compared.
    """
    from diffusers import Flux2Pipeline, Flux2Transformer2DModel

    from engine.testing.tiny_models import build_tiny_pipeline

    klein = build_tiny_pipeline("flux2-klein")
    torch.manual_seed(4)
    transformer = Flux2Transformer2DModel(
        patch_size=1, in_channels=64, num_layers=1, num_single_layers=1, attention_head_dim=16, num_attention_heads=2,
        joint_attention_dim=48, timestep_guidance_channels=32, axes_dims_rope=(4, 4, 4, 4), guidance_embeds=True,
    ).eval()
    pipe = Flux2Pipeline(scheduler=klein.scheduler, vae=klein.vae, text_encoder=None, tokenizer=None,
                         transformer=transformer)
    pipe.set_progress_bar_config(disable=True)
    backend = Flux2Backend(pipe, source="memory", device=torch.device("cpu"), dtype=torch.float32)
    assert backend.has_guidance_embedding and backend.default_steps == 50
    embeds = torch.randn(1, 24, 48, generator=torch.Generator().manual_seed(5))
    cond = Conditioning(positive={"encoder_hidden_states": embeds, "txt_ids": Flux2Pipeline._prepare_text_ids(embeds)},
                        distilled_guidance=backend._guidance_value(2.5))
    steps, latent_hw = 3, 8
    x = torch.randn(1, 16, latent_hw, latent_hw, generator=torch.Generator().manual_seed(6))
    stock = pipe(prompt_embeds=embeds, height=64, width=64, num_inference_steps=steps, guidance_scale=2.5,
                 sigmas=list(np.linspace(1.0, 1.0 / steps, steps)), output_type="latent", latents=patchify(x)).images
    sigmas = [*model_sigmas(steps, backend.shift_rule, backend.tokens_for(latent_hw, latent_hw)), 0.0]
    ours = euler(lambda z, s: backend.velocity(z, s, cond), x, sigmas)
    # Unlike Klein's, dev's "latent" output is the normalised tokens themselves.
    torch.testing.assert_close(ours, _from_pipeline_layout("flux2-klein", stock.float(), latent_hw), atol=1e-4,
                               rtol=1e-4)
    without = euler(lambda z, s: backend.velocity(z, s, Conditioning(cond.positive, distilled_guidance=8.0)), x, sigmas)
    assert not torch.allclose(without, ours, atol=1e-3)  # the guidance value reaches the model
