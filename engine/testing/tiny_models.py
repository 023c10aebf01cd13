"""Tiny random models of every family, saved as real diffusers folders (tests and the demo; no downloads)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import torch

# A few hundred characters and words: enough for any short English prompt, empty included.
_WORDS = ["high", "detail", "sharp", "focus", "fine", "texture", "photo", "of", "a", "the", "cat", "portrait"]
_CHARS = list("abcdefghijklmnopqrstuvwxyz0123456789.,!?'-")


def _clip_tokenizer():
    from transformers import CLIPTokenizer

    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for piece in [*_CHARS, *(c + "</w>" for c in _CHARS), *(w + "</w>" for w in _WORDS)]:
        vocab.setdefault(piece, len(vocab))
    # 77 tokens: without it the length defaults to 1e30 and the pipelines pad to that.
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=77)


def _clip_encoder(hidden: int = 32, seed: int = 0):
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    config = CLIPTextConfig(vocab_size=128, hidden_size=hidden, intermediate_size=37, num_attention_heads=4,
                            num_hidden_layers=1, projection_dim=hidden, max_position_embeddings=77,
                            bos_token_id=0, eos_token_id=1, pad_token_id=1)
    return CLIPTextModel(config)


def _t5_tokenizer():
    from transformers import T5Tokenizer

    # In-memory vocab: `T5Tokenizer(vocab_file=...)` would silently build a broken tokenizer.
    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0)]
    pieces += [("▁" + w, -1.0) for w in _WORDS] + [(c, -3.0) for c in _CHARS]
    return T5Tokenizer(vocab=pieces, extra_ids=0)


def _t5_encoder(d_model: int = 32, seed: int = 0):
    from transformers import T5Config, T5EncoderModel

    torch.manual_seed(seed)
    return T5EncoderModel(T5Config(vocab_size=128, d_model=d_model, d_ff=37, d_kv=8, num_layers=1, num_heads=4))


def _byte_level_vocab(specials: list[str]) -> dict[str, int]:
    """All 256 byte-level BPE symbols (GPT-2's byte-to-unicode map): with no merges, any text tokenizes."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    symbols, extra = [], 0
    for byte in range(256):
        if byte in printable:
            symbols.append(chr(byte))
        else:
            symbols.append(chr(256 + extra))
            extra += 1
    return {piece: i for i, piece in enumerate([*specials, *symbols])}


_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def _qwen_tokenizer():
    from transformers import Qwen2Tokenizer

    vocab = _byte_level_vocab(["<|endoftext|>", "<|im_start|>", "<|im_end|>"])
    tokenizer = Qwen2Tokenizer(vocab=vocab, merges=[], unk_token="<|endoftext|>", pad_token="<|endoftext|>",
                               bos_token=None, eos_token="<|im_end|>", model_max_length=1024)
    tokenizer.chat_template = _CHAT_TEMPLATE
    return tokenizer


def _autoencoder_kl(scaling: float, shift: float, seed: int = 0):
    """Four levels, so latents have the real x8 shape (diffusers' own test VAEs have factor 1)."""
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    return AutoencoderKL(
        in_channels=3, out_channels=3, down_block_types=["DownEncoderBlock2D"] * 4,
        up_block_types=["UpDecoderBlock2D"] * 4, block_out_channels=[8, 8, 8, 8], layers_per_block=1,
        latent_channels=16, norm_num_groups=4, scaling_factor=scaling, shift_factor=shift,
        use_quant_conv=False, use_post_quant_conv=False,
    )


def _flux_vae(seed: int = 0):
    return _autoencoder_kl(0.3611, 0.1159, seed)


def _flux(guided: bool, seed: int):
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel

    torch.manual_seed(seed)
    transformer = FluxTransformer2DModel(
        patch_size=1, in_channels=64, num_layers=1, num_single_layers=1, attention_head_dim=16,
        num_attention_heads=2, joint_attention_dim=32, pooled_projection_dim=32, axes_dims_rope=[4, 4, 8],
        guidance_embeds=guided,
    )
    if guided:  # FLUX.1-dev's scheduler config
        scheduler = FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15,
                                                    base_image_seq_len=256, max_image_seq_len=4096, shift=3.0)
    else:  # FLUX.1-schnell's
        scheduler = FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=False, shift=1.0)
    return FluxPipeline(scheduler=scheduler, vae=_flux_vae(seed), text_encoder=_clip_encoder(seed=seed),
                        tokenizer=_clip_tokenizer(), text_encoder_2=_t5_encoder(seed=seed),
                        tokenizer_2=_t5_tokenizer(), transformer=transformer)


def _sd3(seed: int):
    from diffusers import FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel, StableDiffusion3Pipeline
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection

    def clip(i: int):
        torch.manual_seed(seed + i)
        return CLIPTextModelWithProjection(CLIPTextConfig(
            vocab_size=128, hidden_size=16, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2,
            projection_dim=16, max_position_embeddings=77, bos_token_id=0, eos_token_id=1, pad_token_id=1))

    torch.manual_seed(seed)
    # Two CLIPs of 16 concatenate to the T5 width of 32; pooled projections concatenate to 32 as well.
    transformer = SD3Transformer2DModel(
        sample_size=32, patch_size=2, in_channels=16, out_channels=16, num_layers=1, attention_head_dim=8,
        num_attention_heads=4, joint_attention_dim=32, caption_projection_dim=32, pooled_projection_dim=32,
        pos_embed_max_size=96,
    )
    return StableDiffusion3Pipeline(
        transformer=transformer, scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
        vae=_autoencoder_kl(1.5305, 0.0609, seed), text_encoder=clip(1), tokenizer=_clip_tokenizer(),
        text_encoder_2=clip(2), tokenizer_2=_clip_tokenizer(), text_encoder_3=_t5_encoder(seed=seed),
        tokenizer_3=_t5_tokenizer(),
    )


def _qwen_image(seed: int):
    from diffusers import (
        AutoencoderKLQwenImage,
        FlowMatchEulerDiscreteScheduler,
        QwenImagePipeline,
        QwenImageTransformer2DModel,
    )
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    tokenizer = _qwen_tokenizer()
    torch.manual_seed(seed)
    text_config = {"hidden_size": 16, "intermediate_size": 16, "num_hidden_layers": 2, "num_attention_heads": 2,
                   "num_key_value_heads": 2, "vocab_size": len(tokenizer) + 8, "rope_theta": 1000000.0,
                   "rope_scaling": {"mrope_section": [1, 1, 2], "rope_type": "default", "type": "default"}}
    vision_config = {"depth": 1, "hidden_size": 16, "intermediate_size": 16, "num_heads": 2, "out_hidden_size": 16}
    extra = len(tokenizer)
    config = Qwen2_5_VLConfig(text_config=text_config, vision_config=vision_config, vision_start_token_id=extra,
                              vision_end_token_id=extra + 1, vision_token_id=extra + 2, image_token_id=extra + 3,
                              video_token_id=extra + 4)
    text_encoder = Qwen2_5_VLForConditionalGeneration(config)
    torch.manual_seed(seed)
    transformer = QwenImageTransformer2DModel(
        patch_size=2, in_channels=64, out_channels=16, num_layers=1, attention_head_dim=16, num_attention_heads=2,
        joint_attention_dim=16, guidance_embeds=False, axes_dims_rope=(8, 4, 4),
    )
    torch.manual_seed(seed)
    # Three temporal-downsample flags make a spatial factor of 2**3 = 8, as in the real VAE.
    vae = AutoencoderKLQwenImage(base_dim=8, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                                 temperal_downsample=[False, True, True], latents_mean=[0.05 * i for i in range(16)],
                                 latents_std=[1.0 + 0.1 * i for i in range(16)])
    scheduler = FlowMatchEulerDiscreteScheduler(  # the real Qwen-Image config
        use_dynamic_shifting=True, base_shift=0.5, max_shift=0.9, base_image_seq_len=256, max_image_seq_len=8192,
        shift_terminal=0.02, time_shift_type="exponential", shift=1.0,
    )
    return QwenImagePipeline(transformer=transformer, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,
                             scheduler=scheduler)


def _z_image(seed: int):
    from diffusers import FlowMatchEulerDiscreteScheduler, ZImagePipeline, ZImageTransformer2DModel
    from transformers import Qwen3Config, Qwen3Model

    tokenizer = _qwen_tokenizer()
    torch.manual_seed(seed)
    text_encoder = Qwen3Model(Qwen3Config(hidden_size=16, intermediate_size=16, num_hidden_layers=2,
                                          num_attention_heads=2, num_key_value_heads=2, head_dim=8,
                                          vocab_size=len(tokenizer) + 8))
    torch.manual_seed(seed)
    transformer = ZImageTransformer2DModel(
        all_patch_size=(2,), all_f_patch_size=(1,), in_channels=16, dim=32, n_layers=1, n_refiner_layers=1,
        n_heads=2, n_kv_heads=2, cap_feat_dim=16, axes_dims=[8, 4, 4], axes_lens=[256, 64, 64],
    )
    return ZImagePipeline(transformer=transformer, vae=_flux_vae(seed), text_encoder=text_encoder,
                          tokenizer=tokenizer, scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0))


FAMILIES: dict[str, Callable[[int], object]] = {
    "flux-dev": lambda seed: _flux(True, seed),
    "flux-schnell": lambda seed: _flux(False, seed),
    "sd3": _sd3,
    "qwen-image": _qwen_image,
    "z-image": _z_image,
}


def build_tiny_pipeline(family: str, seed: int = 0):
    """A diffusers pipeline of `family` with tiny random weights, the same for the same seed."""
    if family not in FAMILIES:
        raise ValueError(f"unknown tiny family {family!r}; choose from {', '.join(FAMILIES)}")
    return FAMILIES[family](seed)


def save_tiny_model(family: str, folder: Path, seed: int = 0) -> Path:
    """Build and `save_pretrained` (safetensors) a tiny model; returns the folder."""
    folder = Path(folder)
    build_tiny_pipeline(family, seed).save_pretrained(folder, safe_serialization=True)
    return folder


def save_single_file_transformer(folder: Path, out_file: Path) -> Path:
    """The transformer's weights from a saved model as one .safetensors file (diffusers key names)."""
    from safetensors.torch import load_file, save_file

    state = {}
    for shard in sorted((Path(folder) / "transformer").glob("*.safetensors")):
        state.update(load_file(shard))
    save_file(state, str(out_file))
    return Path(out_file)


def main() -> None:
    parser = argparse.ArgumentParser(description="Save a tiny random model of one family as a diffusers folder.")
    parser.add_argument("folder", type=Path)
    parser.add_argument("--family", default="flux-dev", choices=sorted(FAMILIES))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    from engine.backends.loader import quiet_libraries

    quiet_libraries()
    print(save_tiny_model(args.family, args.folder, args.seed))


if __name__ == "__main__":
    main()
