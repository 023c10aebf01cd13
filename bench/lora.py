"""Does a trained upscaling LoRA help? Train one on a tiny model for a few minutes, then upscale held-out photos
with and without it and compare PSNR.

    nice -n 10 python bench/lora.py [--family flux-schnell] [--steps 200] [--size 64] [--photos 24] [--targets all]

The photos are the Debian ones the built-in model trains on (engine.builtin.data: its train split to train, its
eval split to validate), center crops of --eval-size pixels; the validation input is the crop's bicubic /2 (the
built-in model's pinned evaluation pair), upscaled 2x by engine.api.upscale with the model's defaults (strength
0.35, its schedule, structure guidance) exactly as `uprez upscale` runs it, with the LoRA at weight 1 and without.

A tiny model has a random VAE: decoding any latent costs most of the picture (its round trip of the high-res
crop is itself ~7 dB), so the PSNR against the photo moves little whatever the transformer does. The table also
gives the PSNR against that round trip, decode(encode(high-res)), which is the target the flow is trained to
land on in latent space and shows what the LoRA changed. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing


def _link_photos(photos: list, folder: Path, count: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    present = [p for p in photos if p.path.is_file()][:count]
    for photo in present:
        (folder / f"{photo.name}{photo.path.suffix}").symlink_to(photo.path)
    if not present:
        raise SystemExit("no Debian photos here: apt-get install mate-backgrounds plasma-workspace-wallpapers")
    return folder


def _evaluate(backend, folder: Path, size: int, loras: tuple[str, ...] = ()) -> dict[str, list[float]]:
    import numpy as np
    import torch
    from PIL import Image

    from engine.api import upscale
    from engine.builtin.data import eval_pair, psnr
    from engine.lora.pairs import _crop, list_photos, load_photo
    from engine.settings import UpscaleSettings

    scores: dict[str, list[float]] = {"lanczos": [], "model": [], "model_vs_vae": []}
    for path in list_photos(folder, at_least=1):
        hr, low = eval_pair(_crop(load_photo(path, 1024), size, None), 2)
        image = Image.fromarray(np.round(low * 255).astype(np.uint8))
        settings = UpscaleSettings(scale=2, seed=0, loras=loras)
        out = np.asarray(upscale(image, settings, backend=backend), dtype=np.float32) / 255
        lanczos = np.asarray(image.resize((size, size), Image.Resampling.LANCZOS), dtype=np.float32) / 255
        with torch.no_grad():
            pixels = torch.from_numpy(hr).permute(2, 0, 1)[None] * 2 - 1
            vae = (backend.decode(backend.encode(pixels))[0].permute(1, 2, 0).numpy() + 1) / 2
        scores["lanczos"].append(psnr(lanczos, hr))
        scores["model"].append(psnr(out, hr))
        scores["model_vs_vae"].append(psnr(out, vae))
    return scores


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--family", default="flux-schnell")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--size", type=int, default=64, help="training crop side")
    parser.add_argument("--eval-size", type=int, default=96, help="validation crop side (the upscale's output)")
    parser.add_argument("--photos", type=int, default=24, help="training photos")
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--learning-rate", type=float, default=3e-3)
    parser.add_argument("--pool", type=int, default=48)
    # A tiny model's attention alone has too little to learn with (one double and one single block of width
    # 32): on it an attention-only LoRA lowers the loss but not the upscale's PSNR; every linear layer does.
    parser.add_argument("--targets", choices=("attention", "all"), default="all")
    args = parser.parse_args(argv)

    import numpy as np

    from engine.backends.loader import load_backend, quiet_libraries
    from engine.builtin.data import eval_photos, train_photos
    from engine.lora.options import TrainOptions
    from engine.lora.train import train_lora
    from engine.testing.tiny_models import save_tiny_model

    quiet_libraries()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        model = save_tiny_model(args.family, root / args.family)
        train = _link_photos(train_photos(), root / "train", args.photos)
        held = _link_photos(eval_photos(), root / "eval", 100)
        backend = load_backend(model, device="cpu")
        options = TrainOptions(model=str(model), photos=train, val_photos=held, out=root / "upscale.safetensors",
                               steps=args.steps, size=args.size, rank=args.rank, learning_rate=args.learning_rate,
                               targets=args.targets,
                               val_every=max(1, args.steps // 5), save_every=args.steps, device="cpu",
                               pool=args.pool)
        start = time.perf_counter()
        report = train_lora(options, backend=backend, progress=sys.stderr.isatty())
        seconds = time.perf_counter() - start
        without = _evaluate(backend, held, args.eval_size)
        with_lora = _evaluate(backend, held, args.eval_size, (f"{options.out}:1",))

    count = len(without["model"])
    print(f"tiny {args.family}: LoRA rank {args.rank} on the {args.targets} layers trained {report.steps} steps on "
          f"{args.photos} photos "
          f"({args.size}px crops) in {seconds:.0f} s on this machine's CPU; validation on {count} held-out photos, "
          f"{args.eval_size}px, 2x from bicubic /2\n")
    print("| | held-out loss | one-step PSNR (dB) | upscale PSNR vs photo (dB) | upscale PSNR vs VAE round trip (dB) |")
    print("|---|---|---|---|---|")
    print(f"| Lanczos | | | {np.mean(without['lanczos']):.2f} | |")
    print(f"| base model | {report.start.loss:.4f} | {report.start.psnr:.2f} | {np.mean(without['model']):.3f} | "
          f"{np.mean(without['model_vs_vae']):.3f} |")
    print(f"| with the LoRA | {report.end.loss:.4f} | {report.end.psnr:.2f} | {np.mean(with_lora['model']):.3f} | "
          f"{np.mean(with_lora['model_vs_vae']):.3f} |")
    wins = sum(w > b for w, b in zip(with_lora["model"], without["model"], strict=True))
    wins_vae = sum(w > b for w, b in zip(with_lora["model_vs_vae"], without["model_vs_vae"], strict=True))
    print(f"\nmargin: {np.mean(with_lora['model']) - np.mean(without['model']):+.3f} dB vs the photo "
          f"(LoRA better on {wins}/{count}), "
          f"{np.mean(with_lora['model_vs_vae']) - np.mean(without['model_vs_vae']):+.3f} dB vs the VAE round trip "
          f"(better on {wins_vae}/{count})")


if __name__ == "__main__":
    main()
