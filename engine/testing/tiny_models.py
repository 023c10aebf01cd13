"""Tiny random models of every family, saved as real diffusers folders (tests and the demo; no downloads).

Each family is the real architecture with a few dozen channels: the stock diffusers pipeline class, the real
scheduler config, a VAE with the real x8 spatial factor and tokenizers built in memory. Widths that real
checkpoints keep apart (CLIP vs T5, text vs transformer) differ here too, so that mixing them up fails loudly.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import torch

if TYPE_CHECKING:
    from diffusers import DiffusionPipeline

T = TypeVar("T")

# Whole-word merges: the prompt words tests use, and every word of the Qwen-Image prompt template so that its
# system prefix is 34 tokens, as with the real tokenizer (the pipeline drops exactly 34 hidden states).
_WORDS = [
    "a", "an", "and", "by", "cat", "detail", "fine", "focus", "high", "in", "low", "noise", "of", "photo",
    "portrait", "quality", "sharp", "texture", "the", "with", "system", "user", "assistant", "Describe",
    "image", "detailing", "color", "shape", "size", "quantity", "text", "spatial", "relationships", "objects",
    "background",
]
_QWEN_SPECIALS = [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|vision_pad|>",
    "<|image_pad|>", "<|video_pad|>",
]
# Qwen's chat format, with Qwen3's empty think block when thinking is switched off (Z-Image leaves it on).
_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n"
    "{% if enable_thinking is defined and enable_thinking is false %}<think>\n\n</think>\n\n{% endif %}"
    "{% endif %}"
)


@dataclass(frozen=True)
class TinyFamily:
    """How to build one family, and the diffusers classes its saved folder names."""

    pipeline_class: str
    transformer_class: str
    build: Callable[[int], DiffusionPipeline]


def _seeded(seed: int, make: Callable[[], T]) -> T:
    """`make()` under its own seed, leaving the caller's RNG as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return make()


# ---- tokenizers, built from in-memory data -------------------------------------------------------------


def _byte_symbols() -> list[str]:
    """The 256 symbols byte-level BPE maps bytes to (GPT-2's table): with all of them nothing is unknown."""
    printable = {*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), 256)}
    symbols, extra = [], 0
    for byte in range(256):
        if byte in printable:
            symbols.append(chr(byte))
        else:
            symbols.append(chr(256 + extra))
            extra += 1
    return symbols


def _segment(symbols: Sequence[str], ranks: dict[tuple[str, str], int]) -> list[str]:
    """What BPE makes of `symbols`: repeatedly join the adjacent pair with the lowest merge rank."""
    parts = list(symbols)
    while len(parts) > 1:
        pairs = zip(parts, parts[1:], strict=False)
        rank, i = min((ranks.get(pair, len(ranks)), i) for i, pair in enumerate(pairs))
        if rank == len(ranks):
            break
        parts[i : i + 2] = [parts[i] + parts[i + 1]]
    return parts


def _bpe(base: list[str], words: Sequence[Sequence[str]]) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Vocab and merges that turn each symbol sequence in `words` into one token.

    Each word's merges join what the earlier merges already make of it, and rank after them: chaining raw
    characters instead lets a shorter word's merges cut into a longer one ("Ġthe" would end as "Ġ", "the").
    """
    pieces, ranks = list(base), {}
    for symbols in words:
        parts = _segment(symbols, ranks)
        joined = parts[0]
        for part in parts[1:]:
            ranks[(joined, part)] = len(ranks)
            joined += part
            pieces.append(joined)
    return {piece: i for i, piece in enumerate(dict.fromkeys(pieces))}, list(ranks)


def _clip_tokenizer():
    from transformers import CLIPTokenizer

    symbols = _byte_symbols()
    words = [[*w.lower()[:-1], w.lower()[-1] + "</w>"] for w in _WORDS]
    base = ["<|startoftext|>", "<|endoftext|>", *symbols, *(s + "</w>" for s in symbols)]
    vocab, merges = _bpe(base, words)
    # 77 tokens: without it the length defaults to 1e30 and the pipelines pad to that.
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=77)


def _t5_tokenizer():
    from transformers import T5Tokenizer

    chars = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,:;!?'\"-()"
    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0)]
    pieces += [("▁" + w, -1.0) for w in _WORDS] + [(c, -3.0) for c in chars]
    # An in-memory vocab: `T5Tokenizer(vocab_file=...)` would silently build a broken tokenizer.
    return T5Tokenizer(vocab=pieces, extra_ids=0, model_max_length=512)  # as FLUX.1 and SD3 ship it


def _qwen_tokenizer():
    from tokenizers import AddedToken
    from transformers import Qwen2Tokenizer

    space = _byte_symbols()[ord(" ")]  # "Ġ"
    words = [list(w) for w in _WORDS] + [[space, *w] for w in _WORDS]
    vocab, merges = _bpe([*_QWEN_SPECIALS, "<think>", "</think>", *_byte_symbols()], words)
    tokenizer = Qwen2Tokenizer(vocab=vocab, merges=merges, eos_token="<|im_end|>", model_max_length=131072)
    # Control tokens must be matched whole before the regex splits "<|im_start|>" into punctuation.
    tokenizer.add_tokens([AddedToken(t, special=True) for t in _QWEN_SPECIALS])
    tokenizer.add_tokens([AddedToken(t, special=False) for t in ("<think>", "</think>")])
    tokenizer.chat_template = _CHAT_TEMPLATE
    return tokenizer


# ---- text encoders ------------------------------------------------------------------------------------


def _clip_encoder(tokenizer, hidden: int, projection: bool):
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    # Two layers, so SD3's penultimate hidden state differs from the last one.
    # The pooled output is read at the first eos id, so the config's ids must be the tokenizer's.
    config = CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=2 * hidden, num_attention_heads=2,
        num_hidden_layers=2, projection_dim=hidden, max_position_embeddings=77,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return (CLIPTextModelWithProjection if projection else CLIPTextModel)(config)


def _t5_encoder(tokenizer, d_model: int):
    from transformers import T5Config, T5EncoderModel

    # Relative position buckets: any length works, including FLUX's default 512 tokens.
    config = T5Config(vocab_size=len(tokenizer), d_model=d_model, d_ff=2 * d_model, d_kv=8, num_layers=1,
                      num_heads=2, dropout_rate=0.0, pad_token_id=tokenizer.pad_token_id,
                      eos_token_id=tokenizer.eos_token_id)
    return T5EncoderModel(config)


def _qwen_text_ids(tokenizer) -> dict[str, int]:
    """Token ids a Qwen config names, so that they point into this vocabulary."""
    ids = {"bos_token_id": "<|endoftext|>", "eos_token_id": "<|im_end|>", "pad_token_id": "<|endoftext|>"}
    return {key: tokenizer.convert_tokens_to_ids(token) for key, token in ids.items()}


def _qwen25_vl_encoder(tokenizer, hidden: int):
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    ids = _qwen_text_ids(tokenizer)
    # Multimodal RoPE: the three sections cover half a head (hidden / 2 heads / 2), as [16, 24, 24] covers 64.
    rope = {"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [hidden // 12] * 3}
    text_config = {"hidden_size": hidden, "intermediate_size": 2 * hidden, "num_hidden_layers": 2,
                   "num_attention_heads": 2, "num_key_value_heads": 1, "vocab_size": len(tokenizer),
                   "rope_parameters": rope, **ids}
    vision_config = {"depth": 1, "hidden_size": 16, "intermediate_size": 16, "num_heads": 2,
                     "out_hidden_size": hidden}
    token = tokenizer.convert_tokens_to_ids
    config = Qwen2_5_VLConfig(
        text_config=text_config, vision_config=vision_config, image_token_id=token("<|image_pad|>"),
        video_token_id=token("<|video_pad|>"), vision_start_token_id=token("<|vision_start|>"),
        vision_end_token_id=token("<|vision_end|>"), **ids,
    )
    return Qwen2_5_VLForConditionalGeneration(config)


def _qwen3_encoder(tokenizer, hidden: int):
    from transformers import Qwen3Config, Qwen3Model

    return Qwen3Model(Qwen3Config(hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=2,
                                  num_attention_heads=2, num_key_value_heads=1, head_dim=hidden // 2,
                                  vocab_size=len(tokenizer), **_qwen_text_ids(tokenizer)))


def _qwen3_causal_encoder(tokenizer, hidden: int, layers: int):
    from transformers import Qwen3Config, Qwen3ForCausalLM

    return Qwen3ForCausalLM(Qwen3Config(hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
                                        num_attention_heads=2, num_key_value_heads=1, head_dim=hidden // 2,
                                        vocab_size=len(tokenizer), **_qwen_text_ids(tokenizer)))


# ---- VAEs -----------------------------------------------------------------------------------------------


def _autoencoder_kl(scaling: float, shift: float):
    """FLUX/SD3-style VAE with four levels: latents get the real x8 shape (diffusers' test VAEs are x1)."""
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        in_channels=3, out_channels=3, down_block_types=["DownEncoderBlock2D"] * 4,
        up_block_types=["UpDecoderBlock2D"] * 4, block_out_channels=[8, 8, 8, 8], layers_per_block=1,
        latent_channels=16, norm_num_groups=4, scaling_factor=scaling, shift_factor=shift,
        use_quant_conv=False, use_post_quant_conv=False,
    )


def _flux_vae():
    return _autoencoder_kl(scaling=0.3611, shift=0.1159)


def _qwen_vae():
    from diffusers import AutoencoderKLQwenImage

    # Four levels, three spatial halvings (x8): the pipeline reads 2 ** len(temperal_downsample).
    # Non-trivial per-channel statistics, so a missing (de)normalisation shows up in comparisons.
    return AutoencoderKLQwenImage(
        base_dim=8, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
        temperal_downsample=[False, True, True],
        latents_mean=[round(-0.4 + 0.05 * i, 4) for i in range(16)],
        latents_std=[round(1.0 + 0.1 * i, 4) for i in range(16)],
    )


def _flux2_vae():
    """FLUX.2's VAE with four levels (x8) and 16 latent channels (32 in the real one), and batch-norm statistics
    far from (0, 1), so that a missing (de)normalisation shows up in comparisons."""
    from diffusers import AutoencoderKLFlux2

    vae = AutoencoderKLFlux2(
        block_out_channels=[8, 8, 8, 8], layers_per_block=1, latent_channels=16, norm_num_groups=4,
        use_quant_conv=False, use_post_quant_conv=False,
    )
    channels = vae.bn.running_mean.numel()
    vae.bn.running_mean.copy_(torch.linspace(-0.3, 0.3, channels))
    vae.bn.running_var.copy_(torch.linspace(0.5, 2.0, channels))
    return vae


# ---- pipelines --------------------------------------------------------------------------------------------


def _eval(pipe: DiffusionPipeline) -> DiffusionPipeline:
    """Inference mode for every module, as `from_pretrained` would leave them."""
    for component in pipe.components.values():
        if isinstance(component, torch.nn.Module):
            component.eval()
    return pipe


def _flux(seed: int, guided: bool) -> DiffusionPipeline:
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel

    clip_tok, t5_tok = _clip_tokenizer(), _t5_tokenizer()
    # Pooled CLIP (16) and T5 tokens (32) have different widths, as 768 and 4096 do in FLUX.1.
    transformer = _seeded(seed, lambda: FluxTransformer2DModel(
        patch_size=1, in_channels=64, num_layers=1, num_single_layers=1, attention_head_dim=16,
        num_attention_heads=2, joint_attention_dim=32, pooled_projection_dim=16, axes_dims_rope=[4, 6, 6],
        guidance_embeds=guided,
    ))
    if guided:  # FLUX.1-dev's scheduler config
        scheduler = FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15,
                                                    base_image_seq_len=256, max_image_seq_len=4096, shift=3.0)
    else:  # FLUX.1-schnell's
        scheduler = FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=False, shift=1.0)
    return FluxPipeline(
        scheduler=scheduler, transformer=transformer, vae=_seeded(seed + 1, _flux_vae),
        text_encoder=_seeded(seed + 2, partial(_clip_encoder, clip_tok, 16, projection=False)),
        text_encoder_2=_seeded(seed + 3, partial(_t5_encoder, t5_tok, 32)),
        tokenizer=clip_tok, tokenizer_2=t5_tok,
    )


def _sd3(seed: int) -> DiffusionPipeline:
    from diffusers import FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel, StableDiffusion3Pipeline

    clip_tok, t5_tok = _clip_tokenizer(), _t5_tokenizer()
    # CLIP-L (16) and CLIP-G (24) concatenate to 40, which the pipeline zero-pads to the T5 width of 48, as
    # 768 + 1280 is padded to 4096; the pooled projections concatenate to 40 (2048 in SD3).
    transformer = _seeded(seed, lambda: SD3Transformer2DModel(
        sample_size=32, patch_size=2, in_channels=16, out_channels=16, num_layers=1, attention_head_dim=8,
        num_attention_heads=4, joint_attention_dim=48, caption_projection_dim=32, pooled_projection_dim=40,
        pos_embed_max_size=96,  # in patches: up to 96 * 2 * 8 = 1536 pixels a side
    ))
    return StableDiffusion3Pipeline(
        transformer=transformer, scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
        vae=_seeded(seed + 1, partial(_autoencoder_kl, scaling=1.5305, shift=0.0609)),
        text_encoder=_seeded(seed + 2, partial(_clip_encoder, clip_tok, 16, projection=True)),
        text_encoder_2=_seeded(seed + 3, partial(_clip_encoder, clip_tok, 24, projection=True)),
        text_encoder_3=_seeded(seed + 4, partial(_t5_encoder, t5_tok, 48)),
        tokenizer=clip_tok, tokenizer_2=clip_tok, tokenizer_3=t5_tok,
    )


def _qwen_image(seed: int) -> DiffusionPipeline:
    from diffusers import FlowMatchEulerDiscreteScheduler, QwenImagePipeline, QwenImageTransformer2DModel

    tokenizer = _qwen_tokenizer()
    transformer = _seeded(seed, lambda: QwenImageTransformer2DModel(
        patch_size=2, in_channels=64, out_channels=16, num_layers=1, attention_head_dim=16,
        num_attention_heads=2, joint_attention_dim=24, guidance_embeds=False, axes_dims_rope=(4, 6, 6),
    ))
    scheduler = FlowMatchEulerDiscreteScheduler(  # the real Qwen-Image config
        use_dynamic_shifting=True, base_shift=0.5, max_shift=0.9, base_image_seq_len=256,
        max_image_seq_len=8192, shift_terminal=0.02, time_shift_type="exponential", shift=1.0,
    )
    return QwenImagePipeline(
        transformer=transformer, scheduler=scheduler, vae=_seeded(seed + 1, _qwen_vae),
        text_encoder=_seeded(seed + 2, partial(_qwen25_vl_encoder, tokenizer, 24)), tokenizer=tokenizer,
    )


def _z_image(seed: int) -> DiffusionPipeline:
    from diffusers import FlowMatchEulerDiscreteScheduler, ZImagePipeline, ZImageTransformer2DModel

    tokenizer = _qwen_tokenizer()
    transformer = _seeded(seed, lambda: ZImageTransformer2DModel(
        all_patch_size=(2,), all_f_patch_size=(1,), in_channels=16, dim=32, n_layers=1, n_refiner_layers=1,
        n_heads=2, n_kv_heads=2, cap_feat_dim=24, axes_dims=[4, 6, 6], axes_lens=[1024, 512, 512],
    ))
    return ZImagePipeline(
        transformer=transformer, scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),  # Z-Image-Turbo's
        vae=_seeded(seed + 1, _flux_vae),  # Z-Image decodes with the FLUX VAE
        text_encoder=_seeded(seed + 2, partial(_qwen3_encoder, tokenizer, 24)), tokenizer=tokenizer,
    )


def _flux2_klein(seed: int) -> DiffusionPipeline:
    from diffusers import FlowMatchEulerDiscreteScheduler, Flux2KleinPipeline, Flux2Transformer2DModel

    tokenizer = _qwen_tokenizer()
    # The pipeline stacks Qwen3's hidden states 9, 18 and 27: 27 layers of width 16 give 48-wide text tokens.
    transformer = _seeded(seed, lambda: Flux2Transformer2DModel(
        patch_size=1, in_channels=64, num_layers=1, num_single_layers=1, attention_head_dim=16,
        num_attention_heads=2, joint_attention_dim=48, timestep_guidance_channels=32, axes_dims_rope=(4, 4, 4, 4),
        guidance_embeds=False,
    ))
    scheduler = FlowMatchEulerDiscreteScheduler(  # FLUX.2 Klein's config; the pipeline passes mu itself
        use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15, base_image_seq_len=256,
        max_image_seq_len=4096, shift=3.0, time_shift_type="exponential",
    )
    return Flux2KleinPipeline(
        scheduler=scheduler, transformer=transformer, vae=_seeded(seed + 1, _flux2_vae),
        text_encoder=_seeded(seed + 2, partial(_qwen3_causal_encoder, tokenizer, 16, 27)), tokenizer=tokenizer,
        is_distilled=True,  # as Klein 4B/9B (the step-distilled releases) ship
    )


def _chroma(seed: int) -> DiffusionPipeline:
    from diffusers import ChromaPipeline, ChromaTransformer2DModel, FlowMatchEulerDiscreteScheduler

    t5_tok = _t5_tokenizer()
    transformer = _seeded(seed, lambda: ChromaTransformer2DModel(
        patch_size=1, in_channels=64, num_layers=1, num_single_layers=1, attention_head_dim=16,
        num_attention_heads=2, joint_attention_dim=32, axes_dims_rope=(4, 6, 6), approximator_num_channels=16,
        approximator_hidden_dim=32, approximator_layers=1,
    ))
    scheduler = FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15,
                                                base_image_seq_len=256, max_image_seq_len=4096, shift=3.0)
    return ChromaPipeline(
        scheduler=scheduler, transformer=transformer, vae=_seeded(seed + 1, _flux_vae),
        text_encoder=_seeded(seed + 3, partial(_t5_encoder, t5_tok, 32)), tokenizer=t5_tok,
    )


FAMILIES: dict[str, TinyFamily] = {
    "flux-dev": TinyFamily("FluxPipeline", "FluxTransformer2DModel", partial(_flux, guided=True)),
    "flux-schnell": TinyFamily("FluxPipeline", "FluxTransformer2DModel", partial(_flux, guided=False)),
    "sd3": TinyFamily("StableDiffusion3Pipeline", "SD3Transformer2DModel", _sd3),
    "qwen-image": TinyFamily("QwenImagePipeline", "QwenImageTransformer2DModel", _qwen_image),
    "z-image": TinyFamily("ZImagePipeline", "ZImageTransformer2DModel", _z_image),
    "flux2-klein": TinyFamily("Flux2KleinPipeline", "Flux2Transformer2DModel", _flux2_klein),
    "chroma": TinyFamily("ChromaPipeline", "ChromaTransformer2DModel", _chroma),
}


def build_tiny_pipeline(family: str, seed: int = 0) -> DiffusionPipeline:
    """A diffusers pipeline of `family` with tiny random weights, the same for the same seed."""
    if family not in FAMILIES:
        raise ValueError(f"unknown tiny family {family!r}; choose from {', '.join(FAMILIES)}")
    return _eval(FAMILIES[family].build(seed))


def save_tiny_model(family: str, folder: Path, seed: int = 0) -> Path:
    """Build and `save_pretrained` (safetensors) a tiny model; returns the folder."""
    folder = Path(folder)
    build_tiny_pipeline(family, seed).save_pretrained(folder, safe_serialization=True)
    return folder


def save_single_file_transformer(folder: Path, out_file: Path) -> Path:
    """A saved model's transformer as one .safetensors file with diffusers key names (a single-file model)."""
    from safetensors.torch import load_file, save_file

    shards = sorted((Path(folder) / "transformer").glob("*.safetensors"))
    if not shards:
        raise FileNotFoundError(f"no transformer weights under {folder}")
    state: dict[str, Any] = {}
    for shard in shards:
        state.update(load_file(shard))
    save_file(state, str(out_file), metadata={"format": "pt"})
    return Path(out_file)


def main(argv: Sequence[str] | None = None) -> None:
    """`python -m engine.testing.tiny_models OUT_DIR --family flux-dev`: save one model, print its path."""
    parser = argparse.ArgumentParser(description="Save a tiny random model as a diffusers folder")
    parser.add_argument("folder", type=Path)
    parser.add_argument("--family", default="flux-dev", choices=sorted(FAMILIES))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    from engine.backends.loader import quiet_libraries

    quiet_libraries()
    print(save_tiny_model(args.family, args.folder, args.seed))


if __name__ == "__main__":
    main()
