"""Seconds per output megapixel of upscale models (engine.sr) next to Lanczos and the built-in flow model.

    python bench/sr.py [--width 1024] [--scale 4] [--archs esrgan,compact,...] [--threads 2]

Each architecture is built at its published size (the configuration of its best-known release, listed below)
with random weights: speed does not depend on the weights. The input is the bundled sample photo resized so the
output is `--width` pixels wide; every model runs through `engine.sr.upscale.upscale_sr` (tiled, fp32 on the
CPU), the built-in model through `engine.api.upscale` with its defaults. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

# The published configurations: (spandrel class path, keyword arguments without the scale, scale keyword).
PUBLISHED = {
    "esrgan": ("ESRGAN.ESRGAN", {"num_filters": 64, "num_blocks": 23}, "scale", "RealESRGAN_x4plus / 4x-UltraSharp"),
    "compact": ("Compact.Compact", {"num_feat": 64, "num_conv": 32}, "upscale", "realesr-general-x4v3"),
    "span": ("SPAN.SPAN", {"num_in_ch": 3, "num_out_ch": 3, "feature_channels": 48}, "upscale", "SPAN x4 (NTIRE 2024)"),
    "omnisr": ("OmniSR.OmniSR", {"num_feat": 64, "block_num": 1, "window_size": 8, "res_num": 5}, "up_scale",
               "OmniSR_X4_DIV2K"),
    "swinir": ("SwinIR.SwinIR", {"img_size": 64, "embed_dim": 180, "depths": [6] * 6, "num_heads": [6] * 6,
                                 "window_size": 8, "mlp_ratio": 2.0, "upsampler": "nearest+conv",
                                 "resi_connection": "1conv"}, "upscale", "SwinIR-M real-world x4"),
    "dat": ("DAT.DAT", {"img_size": 64, "embed_dim": 180, "split_size": [8, 32], "depth": [6] * 6,
                        "num_heads": [6] * 6, "expansion_factor": 2.0}, "upscale", "DAT x4"),
}


def build(arch: str, scale: int, folder: Path) -> Path:
    import importlib

    import torch

    from engine.sr.spandrel_import import import_spandrel

    import_spandrel()
    where, kwargs, scale_key, _ = PUBLISHED[arch]
    module, name = where.rsplit(".", 1)
    net = getattr(importlib.import_module(f"spandrel.architectures.{module}"), name)(**kwargs, **{scale_key: scale})
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{arch}-x{scale}.pth"
    torch.save(net.state_dict(), path)
    return path


def timed(run) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=1024, help="output width in pixels (default 1024)")
    parser.add_argument("--scale", type=int, default=4)
    parser.add_argument("--archs", default=",".join(PUBLISHED))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-builtin", action="store_true")
    args = parser.parse_args()

    import numpy as np
    import torch
    from PIL import Image

    from engine.pixels import conventional_resize, from_image
    from engine.sr.load import load_sr_model
    from engine.sr.upscale import upscale_sr

    torch.set_num_threads(args.threads)
    with Image.open(ROOT / "engine" / "data" / "sample.jpg") as photo:
        width = args.width // args.scale
        height = round(photo.height * width / photo.width)
        image = np.asarray(photo.convert("RGB").resize((width, height), Image.Resampling.LANCZOS))
    out_mp = (width * args.scale) * (height * args.scale) / 1e6
    rows = []
    rgb = from_image(image).rgb
    seconds = timed(lambda: conventional_resize(rgb, (width * args.scale, height * args.scale)))
    rows.append(("Lanczos", "-", "-", seconds))
    for arch in args.archs.split(","):
        path = build(arch, args.scale, ROOT / "bench" / "out" / "sr")
        model = load_sr_model(path, device="cpu")
        params = sum(p.numel() for p in model.descriptor.model.parameters()) / 1e6
        upscale_sr(image[:32, :32], model, scale=args.scale)  # warm-up: first-call allocations
        seconds = timed(lambda model=model: upscale_sr(image, model, scale=args.scale))
        rows.append((f"{model.architecture} ({PUBLISHED[arch][3]})", f"{params:.2f}M", f"{model.scale}x", seconds))
        print(f"{arch}: {seconds:.1f} s", file=sys.stderr)
    if not args.no_builtin:
        from engine.api import get_backend, upscale
        from engine.settings import ModelSpec

        backend = get_backend(ModelSpec(device="cpu"))
        seconds = timed(lambda: upscale(image, backend=backend, scale=args.scale))
        rows.append(("built-in flow model (defaults)", "-", "-", seconds))
    print(f"Input {width}x{height}, output {width * args.scale}x{height * args.scale} ({out_mp:.2f} MP), "
          f"{args.threads} threads, fp32 on the CPU\n")
    print("| model | parameters | native | seconds | seconds / output MP |")
    print("|---|---:|---:|---:|---:|")
    for name, params, native, seconds in rows:
        print(f"| {name} | {params} | {native} | {seconds:.2f} | {seconds / out_mp:.2f} |")


if __name__ == "__main__":
    main()
