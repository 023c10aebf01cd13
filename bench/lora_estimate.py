"""What `uprez train-lora` should cost on a real GPU, per 1000 steps: an ESTIMATE from the real architectures.

    python bench/lora_estimate.py [--rank 16] [--size 512] [--targets attention]

Each recommended model's transformer is built on the `meta` device from its published config
(engine.model_architectures, engine.memory_plan.build_on_meta: no weights, no download) and its parameters and the
LoRA's (peft's layers on the same modules train-lora targets) are counted. From those:

- time: a step is the forward, the backward through the frozen base (about 2 forwards: gradients flow to the LoRA
  layers through every block, but no weight gradients of the base are formed) and, with gradient checkpointing,
  one more forward: 4 forwards of 2·N·T FLOPs (N parameters, T image + text tokens; attention's own T² term is
  added), at an assumed 40% of the card's dense bf16 peak (RTX 4090 165 TFLOPS, H100 SXM 990 TFLOPS). The VAE
  encodes are small beside this and left out.
- memory: the base weights (bf16, or 1 byte a weight as fp8 / GGUF Q8), the LoRA in fp32 with its gradient and
  AdamW's two moments (fp32; 8-bit AdamW: 2 bytes), and the checkpointed activations: each block's input kept
  (T·width·2 bytes) plus one block's full activations while it is recomputed (~24·T·width·2 bytes).

Nothing here was measured on a GPU (this project's machines have none): treat the figures as the order of
magnitude to plan by. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

PEAK_TFLOPS = {"RTX 4090 (24 GB)": 165.0, "H100 (80 GB)": 990.0}
EFFICIENCY = 0.4


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Estimated train-lora time and memory per 1000 steps")
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--size", type=int, default=512, help="training crop side in pixels")
    parser.add_argument("--targets", choices=("attention", "all"), default="attention")
    args = parser.parse_args(argv)

    import torch
    from engine.model_architectures import ARCHITECTURES

    from engine.lora.train import target_modules
    from engine.memory_plan import build_on_meta

    print(f"ESTIMATE (not measured): rank {args.rank} on the {args.targets} layers, batch 1, {args.size}x{args.size} "
          f"crops, gradient checkpointing, {EFFICIENCY:.0%} of peak bf16\n")
    cards = list(PEAK_TFLOPS)
    print("| model | transformer params | LoRA params | tokens | " + " | ".join(f"min / 1000 steps, {c}" for c in cards)
          + " | GPU memory, bf16 base + AdamW | fp8/Q8 base + 8-bit AdamW |")
    print("|---|---|---|---|" + "---|" * len(cards) + "---|---|")
    for repo, arch in ARCHITECTURES.items():
        part = next(p for p in arch.parts if p.name == "transformer")
        transformer = build_on_meta(part)
        n_base = sum(p.numel() for p in transformer.parameters())
        targets = target_modules(transformer, args.targets)
        modules = dict(transformer.named_modules())
        if isinstance(targets, str):
            chosen = [m for name, m in modules.items()
                      if isinstance(m, torch.nn.Linear) and re.fullmatch(targets, name)]
        else:
            chosen = [modules[name] for name in targets]
        n_lora = sum(args.rank * (m.in_features + m.out_features) for m in chosen)
        widths = [m.in_features for m in chosen] or [1]
        width = max(set(widths), key=widths.count)
        blocks = len({re.sub(r"\.\d+\..*", "", n) + re.search(r"\.(\d+)\.", n)[1]
                      for n in modules if re.search(r"(blocks|layers|refiner)\.\d+\.", n)})
        vae_factor = 8
        image_tokens = (args.size // (vae_factor * 2)) ** 2
        tokens = image_tokens + arch.text_tokens
        forward = 2 * n_base * tokens + 4 * blocks * tokens * tokens * width  # weights, then attention's T^2
        minutes = [4 * forward * 1000 / (PEAK_TFLOPS[c] * 1e12 * EFFICIENCY) / 60 for c in cards]
        activations = blocks * tokens * width * 2 + 24 * tokens * width * 2
        bf16 = 2 * n_base + n_lora * (4 + 4 + 8) + activations
        small = 1 * n_base + n_lora * (4 + 4 + 2) + activations
        print(f"| {repo} | {n_base / 1e9:.1f} B | {n_lora / 1e6:.1f} M | {tokens} | "
              + " | ".join(f"{m:.0f}" for m in minutes) + f" | {bf16 / 2**30:.0f} GiB | {small / 2**30:.0f} GiB |")


if __name__ == "__main__":
    main()
