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


def _flux_vae(seed: int = 0):
    """Four levels, so latents have the real x8 shape (diffusers' own test VAEs have factor 1)."""
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    return AutoencoderKL(
        in_channels=3, out_channels=3, down_block_types=["DownEncoderBlock2D"] * 4,
        up_block_types=["UpDecoderBlock2D"] * 4, block_out_channels=[8, 8, 8, 8], layers_per_block=1,
        latent_channels=16, norm_num_groups=4, scaling_factor=0.3611, shift_factor=0.1159,
        use_quant_conv=False, use_post_quant_conv=False,
    )


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


FAMILIES: dict[str, Callable[[int], object]] = {
    "flux-dev": lambda seed: _flux(True, seed),
    "flux-schnell": lambda seed: _flux(False, seed),
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
    print(save_tiny_model(args.family, args.folder, args.seed))


if __name__ == "__main__":
    main()
