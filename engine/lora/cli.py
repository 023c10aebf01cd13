"""`uprez train-lora`: its flags and run; the defaults and why are in engine.lora.train."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from engine.lora.options import TrainOptions

_DEFAULTS = TrainOptions(model="", photos=Path(), out=Path("x.safetensors"))


def add_train_parser(commands: argparse._SubParsersAction) -> None:
    train = commands.add_parser(
        "train-lora", help="train an upscaling LoRA for a flow model on your photos",
        description="Train LoRA layers on the model's transformer so that the flow from a re-noised, upsampled "
                    "photo lands on the high-res one (pairs: photo -> degrade and downscale -> Lanczos back up). "
                    "Checkpoints next to --out make an interrupted run resumable; NAME.log.csv logs the loss "
                    "and the held-out validation.")
    train.add_argument("--model", required=True, help="the flow model (as uprez upscale --model)")
    train.add_argument("--photos", type=Path, required=True, help="a folder of high-res photos (some are held out)")
    train.add_argument("--out", type=Path, required=True, help="the LoRA to write, NAME.safetensors")
    train.add_argument("--val-photos", type=Path,
                       help="a folder of held-out photos for validation (default: every 10th of --photos)")
    train.add_argument("--base", help="VAE + text encoders for a transformer-only --model file")
    train.add_argument("--steps", type=int, default=_DEFAULTS.steps)
    train.add_argument("--targets", choices=("attention", "all"), default=_DEFAULTS.targets,
                       help="LoRA layers on the attention projections (default) or on every linear layer of the blocks")
    train.add_argument("--rank", type=int, default=_DEFAULTS.rank)
    train.add_argument("--learning-rate", type=float, default=_DEFAULTS.learning_rate)
    train.add_argument("--batch", type=int, default=_DEFAULTS.batch)
    train.add_argument("--size", type=int, default=_DEFAULTS.size, help="pixel side of the training crops")
    train.add_argument("--val-every", type=int, default=_DEFAULTS.val_every)
    train.add_argument("--save-every", type=int, default=_DEFAULTS.save_every)
    train.add_argument("--seed", type=int, default=_DEFAULTS.seed)
    train.add_argument("--device", default="auto")
    train.add_argument("--dtype", default="auto")
    train.add_argument("--optimizer", choices=("auto", "adamw", "adamw8bit"), default="auto",
                       help="auto: 8-bit AdamW (bitsandbytes) on CUDA where installed, else AdamW")
    train.add_argument("--gradient-checkpointing", action=argparse.BooleanOptionalAction, default=None,
                       help="recompute activations in the backward pass (default: on CUDA)")
    train.add_argument("--pool", type=int, default=0,
                       help="encode this many pairs once and reuse them (for CPUs, where the VAE is slow)")
    train.add_argument("--no-resume", dest="resume", action="store_false",
                       help="start again even where checkpoints of an earlier run are next to --out")


def run_train(args: argparse.Namespace) -> int:
    from engine.backends.loader import quiet_libraries
    from engine.lora.train import train_lora

    quiet_libraries()
    options = TrainOptions(
        model=args.model, photos=args.photos, val_photos=args.val_photos, out=args.out.expanduser(), base=args.base,
        steps=args.steps, targets=args.targets,
        rank=args.rank, learning_rate=args.learning_rate, batch=args.batch, size=args.size, val_every=args.val_every,
        save_every=args.save_every, seed=args.seed, device=args.device, dtype=args.dtype, optimizer=args.optimizer,
        gradient_checkpointing=args.gradient_checkpointing, pool=args.pool, resume=args.resume,
    )
    report = train_lora(options, progress=sys.stderr.isatty())
    print(f"wrote {report.out} after {report.steps} steps; validation loss {report.start.loss:.4f} -> "
          f"{report.end.loss:.4f}, one-step PSNR {report.start.psnr:.2f} -> {report.end.psnr:.2f} dB "
          f"(Lanczos upsample {report.end.psnr_upsampled:.2f} dB)")
    return 0
