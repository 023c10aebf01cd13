"""Random LoRAs for the tiny models, written as the common formats lay them out (tests; no downloads).

"diffusers" is what diffusers' and peft's savers write (`transformer.<module>.lora_A.weight`); "kohya" is
sd-scripts' `lora_unet_<name>.lora_down.weight` with an `.alpha`, under each family's kohya names: BFL's
original block names for FLUX.1/Chroma/FLUX.2 (fused qkv), diffusers' module paths with underscores for
Qwen-Image, Z-Image and SD3. Shapes come from the tiny transformer itself, so a LoRA fits its model exactly.
"""

from __future__ import annotations

from pathlib import Path

import torch

# Layers each family's test LoRA touches: kohya name -> the diffusers modules it covers (several: a fused layer).
KOHYA_LAYERS: dict[str, dict[str, list[str]]] = {
    "flux": {
        "double_blocks_0_img_attn_qkv": ["transformer_blocks.0.attn.to_q", "transformer_blocks.0.attn.to_k",
                                         "transformer_blocks.0.attn.to_v"],
        "double_blocks_0_img_attn_proj": ["transformer_blocks.0.attn.to_out.0"],
        "double_blocks_0_img_mlp_0": ["transformer_blocks.0.ff.net.0.proj"],
        "single_blocks_0_linear2": ["single_transformer_blocks.0.proj_out"],
    },
    "flux2": {
        "double_blocks_0_img_attn_qkv": ["transformer_blocks.0.attn.to_q", "transformer_blocks.0.attn.to_k",
                                         "transformer_blocks.0.attn.to_v"],
        "double_blocks_0_img_attn_proj": ["transformer_blocks.0.attn.to_out.0"],
        "double_blocks_0_img_mlp_0": ["transformer_blocks.0.ff.linear_in"],
        "single_blocks_0_linear1": ["single_transformer_blocks.0.attn.to_qkv_mlp_proj"],
    },
    "qwen-image": {
        "transformer_blocks_0_attn_to_q": ["transformer_blocks.0.attn.to_q"],
        "transformer_blocks_0_attn_add_k_proj": ["transformer_blocks.0.attn.add_k_proj"],
        "transformer_blocks_0_img_mlp_net_0_proj": ["transformer_blocks.0.img_mlp.net.0.proj"],
    },
    "z-image": {
        "layers_0_attention_to_q": ["layers.0.attention.to_q"],
        "layers_0_attention_to_out_0": ["layers.0.attention.to_out.0"],
        "layers_0_feed_forward_w1": ["layers.0.feed_forward.w1"],
    },
    "sd3": {
        "transformer_blocks_0_attn_to_q": ["transformer_blocks.0.attn.to_q"],
        "transformer_blocks_0_attn_add_k_proj": ["transformer_blocks.0.attn.add_k_proj"],
        "transformer_blocks_0_ff_net_0_proj": ["transformer_blocks.0.ff.net.0.proj"],
    },
}
KOHYA_LAYERS["chroma"] = KOHYA_LAYERS["flux"]
ATTENTION = ("to_q", "to_k", "to_v", "to_out.0", "add_q_proj", "add_k_proj", "add_v_proj", "to_add_out")


def _linears(transformer: torch.nn.Module) -> dict[str, torch.nn.Linear]:
    """The transformer's linear layers by their own names, also while peft wraps them (`x.base_layer`)."""
    return {name.removesuffix(".base_layer"): m for name, m in transformer.named_modules()
            if isinstance(m, torch.nn.Linear) and ".lora_" not in name}


def save_tiny_lora(transformer: torch.nn.Module, family: str, out: Path, fmt: str = "diffusers", *, rank: int = 4,
                   seed: int = 0, scale: float = 0.5) -> Path:
    """A random LoRA for `transformer` (of `family`, e.g. "flux" or "z-image") in `fmt` ("diffusers" or "kohya")."""
    from safetensors.torch import save_file

    gen = torch.Generator().manual_seed(seed)
    linears = _linears(transformer)

    def pair(n_in: int, n_out: int) -> tuple[torch.Tensor, torch.Tensor]:
        down = torch.randn(rank, n_in, generator=gen) * scale
        up = torch.randn(n_out, rank, generator=gen) * scale
        return down.contiguous(), up.contiguous()

    tensors: dict[str, torch.Tensor] = {}
    if fmt == "diffusers":
        for name, layer in linears.items():
            if name.endswith(ATTENTION):
                down, up = pair(layer.in_features, layer.out_features)
                tensors[f"transformer.{name}.lora_A.weight"] = down
                tensors[f"transformer.{name}.lora_B.weight"] = up
    elif fmt == "kohya":
        for kohya, modules in KOHYA_LAYERS[family].items():
            n_in = linears[modules[0]].in_features
            n_out = sum(linears[m].out_features for m in modules)
            down, up = pair(n_in, n_out)
            tensors[f"lora_unet_{kohya}.lora_down.weight"] = down
            tensors[f"lora_unet_{kohya}.lora_up.weight"] = up
            tensors[f"lora_unet_{kohya}.alpha"] = torch.tensor(float(rank) / 2)  # scale 1/2, as trainers often
    else:
        raise ValueError(f"unknown LoRA format {fmt!r}; use diffusers or kohya")
    save_file(tensors, str(out))
    return Path(out)
