"""The real architectures of the models Uprez recommends, as their published config.json files give them.

Memory plans build these on the `meta` device (no weights, no download) and count every parameter, so a plan for
a model that is not on this machine is as exact as one for a model that is. A local model's plan reads its own
config files instead (`engine.memory_plan.architecture_of`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Part:
    """One component: its library ("diffusers" / "transformers"), class and config."""

    name: str
    library: str
    class_name: str
    config: dict[str, Any]


@dataclass(frozen=True)
class Architecture:
    repo_id: str
    family: str
    parts: tuple[Part, ...]
    text_tokens: int = 512  # text tokens the transformer attends to besides the image's
    notes: dict[str, str] = field(default_factory=dict)


def _flux_vae(latent_channels: int = 16) -> Part:
    return Part("vae", "diffusers", "AutoencoderKL", {
        "in_channels": 3, "out_channels": 3, "latent_channels": latent_channels, "layers_per_block": 2,
        "block_out_channels": [128, 256, 512, 512], "down_block_types": ["DownEncoderBlock2D"] * 4,
        "up_block_types": ["UpDecoderBlock2D"] * 4, "norm_num_groups": 32, "use_quant_conv": False,
        "use_post_quant_conv": False,
    })


_CLIP_L = {"model_type": "clip_text_model", "hidden_size": 768, "intermediate_size": 3072, "num_attention_heads": 12,
           "num_hidden_layers": 12, "vocab_size": 49408, "max_position_embeddings": 77, "projection_dim": 768,
           "hidden_act": "quick_gelu"}
_CLIP_G = {"model_type": "clip_text_model", "hidden_size": 1280, "intermediate_size": 5120, "num_attention_heads": 20,
           "num_hidden_layers": 32, "vocab_size": 49408, "max_position_embeddings": 77, "projection_dim": 1280,
           "hidden_act": "gelu"}
_T5_XXL = {"model_type": "t5", "d_model": 4096, "d_ff": 10240, "d_kv": 64, "num_heads": 64, "num_layers": 24,
           "vocab_size": 32128, "feed_forward_proj": "gated-gelu", "is_encoder_decoder": False}
_QWEN3_4B = {"model_type": "qwen3", "hidden_size": 2560, "intermediate_size": 9728, "num_hidden_layers": 36,
             "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 128, "vocab_size": 151936,
             "tie_word_embeddings": True}
_QWEN3_8B = {"model_type": "qwen3", "hidden_size": 4096, "intermediate_size": 12288, "num_hidden_layers": 36,
             "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 128, "vocab_size": 151936,
             "tie_word_embeddings": False}


def _flux1(repo_id: str, guided: bool) -> Architecture:
    return Architecture(repo_id, "flux", (
        Part("transformer", "diffusers", "FluxTransformer2DModel", {
            "patch_size": 1, "in_channels": 64, "num_layers": 19, "num_single_layers": 38, "attention_head_dim": 128,
            "num_attention_heads": 24, "joint_attention_dim": 4096, "pooled_projection_dim": 768,
            "guidance_embeds": guided, "axes_dims_rope": [16, 56, 56]}),
        Part("text_encoder", "transformers", "CLIPTextModel", _CLIP_L),
        Part("text_encoder_2", "transformers", "T5EncoderModel", _T5_XXL),
        _flux_vae(),
    ))


def _flux2_klein(repo_id: str, heads: int, layers: int, single: int, text: dict[str, Any]) -> Architecture:
    return Architecture(repo_id, "flux2", (
        Part("transformer", "diffusers", "Flux2Transformer2DModel", {
            "patch_size": 1, "in_channels": 128, "num_layers": layers, "num_single_layers": single,
            "attention_head_dim": 128, "num_attention_heads": heads, "joint_attention_dim": 3 * text["hidden_size"],
            "timestep_guidance_channels": 256, "mlp_ratio": 3.0, "axes_dims_rope": [32, 32, 32, 32],
            "guidance_embeds": False}),
        Part("text_encoder", "transformers", "Qwen3ForCausalLM", text),
        Part("vae", "diffusers", "AutoencoderKLFlux2", {}),
    ))


def _sd35(repo_id: str) -> Architecture:
    return Architecture(repo_id, "sd3", (
        Part("transformer", "diffusers", "SD3Transformer2DModel", {
            "sample_size": 128, "patch_size": 2, "in_channels": 16, "num_layers": 38, "attention_head_dim": 64,
            "num_attention_heads": 38, "joint_attention_dim": 4096, "caption_projection_dim": 2432,
            "pooled_projection_dim": 2048, "out_channels": 16, "pos_embed_max_size": 192, "qk_norm": "rms_norm"}),
        Part("text_encoder", "transformers", "CLIPTextModelWithProjection", _CLIP_L),
        Part("text_encoder_2", "transformers", "CLIPTextModelWithProjection", _CLIP_G),
        Part("text_encoder_3", "transformers", "T5EncoderModel", _T5_XXL),
        _flux_vae(),
    ), text_tokens=333)


ARCHITECTURES: dict[str, Architecture] = {a.repo_id: a for a in (
    _flux1("black-forest-labs/FLUX.1-dev", guided=True),
    _flux1("black-forest-labs/FLUX.1-schnell", guided=False),
    _flux2_klein("black-forest-labs/FLUX.2-klein-4B", heads=24, layers=5, single=20, text=_QWEN3_4B),
    _flux2_klein("black-forest-labs/FLUX.2-klein-9B", heads=32, layers=8, single=24, text=_QWEN3_8B),
    Architecture("black-forest-labs/FLUX.2-dev", "flux2", (
        Part("transformer", "diffusers", "Flux2Transformer2DModel", {}),  # the class defaults are dev's
        Part("text_encoder", "transformers", "Mistral3ForConditionalGeneration", {
            "model_type": "mistral3",
            "text_config": {"model_type": "mistral", "hidden_size": 5120, "intermediate_size": 32768,
                            "num_hidden_layers": 40, "num_attention_heads": 32, "num_key_value_heads": 8,
                            "head_dim": 128, "vocab_size": 131072},
            "vision_config": {"model_type": "pixtral", "hidden_size": 1024, "intermediate_size": 4096,
                              "num_hidden_layers": 24, "num_attention_heads": 16, "patch_size": 14,
                              "image_size": 1540}}),
        Part("vae", "diffusers", "AutoencoderKLFlux2", {}),
    )),
    Architecture("Qwen/Qwen-Image", "qwen-image", (
        Part("transformer", "diffusers", "QwenImageTransformer2DModel", {
            "patch_size": 2, "in_channels": 64, "out_channels": 16, "num_layers": 60, "attention_head_dim": 128,
            "num_attention_heads": 24, "joint_attention_dim": 3584, "guidance_embeds": False,
            "axes_dims_rope": [16, 56, 56]}),
        Part("text_encoder", "transformers", "Qwen2_5_VLForConditionalGeneration", {
            "model_type": "qwen2_5_vl",
            "text_config": {"model_type": "qwen2_5_vl_text", "hidden_size": 3584, "intermediate_size": 18944,
                            "num_hidden_layers": 28, "num_attention_heads": 28, "num_key_value_heads": 4,
                            "vocab_size": 152064,
                            "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0,
                                                "mrope_section": [16, 24, 24]}},
            "vision_config": {"depth": 32, "hidden_size": 1280, "intermediate_size": 3420, "num_heads": 16,
                              "out_hidden_size": 3584}}),
        Part("vae", "diffusers", "AutoencoderKLQwenImage", {
            "base_dim": 96, "z_dim": 16, "dim_mult": [1, 2, 4, 4], "num_res_blocks": 2,
            "temperal_downsample": [False, True, True]}),
    ), text_tokens=256),
    Architecture("Tongyi-MAI/Z-Image-Turbo", "z-image", (
        Part("transformer", "diffusers", "ZImageTransformer2DModel", {
            "all_patch_size": [2], "all_f_patch_size": [1], "in_channels": 16, "dim": 3840, "n_layers": 30,
            "n_refiner_layers": 2, "n_heads": 30, "n_kv_heads": 30, "norm_eps": 1e-5, "qk_norm": True,
            "cap_feat_dim": 2560, "rope_theta": 256.0, "t_scale": 1000.0, "axes_dims": [32, 48, 48],
            "axes_lens": [1024, 512, 512]}),
        Part("text_encoder", "transformers", "Qwen3Model", _QWEN3_4B),
        _flux_vae(),
    ), text_tokens=256),
    _sd35("stabilityai/stable-diffusion-3.5-large"),
)}
