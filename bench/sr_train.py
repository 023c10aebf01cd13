"""Train a small real SR model here (no SR weights can be downloaded): an SRVGG "Compact" x2, for bench/sr_refine.py.

    nice -n 10 python bench/sr_train.py --out ~/.cache/uprez/sr-train --steps 1300 --threads 1

The network is spandrel's `Compact` class (Real-ESRGAN's SRVGGNetCompact, the architecture of
realesr-general-x4v3 / realesr-animevideov3), built at 32 features and 8 convolutions (79k parameters), so the
saved state dict has Real-ESRGAN's key layout (`body.N.weight`) and loads through the user's path
(engine.sr.load) like a downloaded `.pth`. Pairs: random 96 px crops of the built-in model's *train* photos
(engine.builtin.data: the eval photos are never seen) and their degraded half-size copy from `data.degrade`
(60 % clean bicubic, the rest mild blur / resize kernel / noise / JPEG q75-95, Real-ESRGAN's first-order
recipe). L1 loss (Real-ESRGAN's PSNR-oriented stage), Adam with warm-up and cosine decay, an EMA of the
weights, which is what is saved (`compact-x2.safetensors` in --out, or --export PATH).
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

from engine.builtin import data  # noqa: E402
from engine.sr.spandrel_import import import_spandrel  # noqa: E402

FEATURES, CONVS = 32, 8  # a fifth of realesr-general-x4v3's width x depth: trainable on one CPU thread in minutes


def build(scale: int = 2) -> torch.nn.Module:
    import_spandrel()
    from spandrel.architectures.Compact import Compact

    return Compact(num_in_ch=3, num_out_ch=3, num_feat=FEATURES, num_conv=CONVS, upscale=scale)


def batch_of(images: list[np.ndarray], rng: np.random.Generator, batch: int, crop: int,
             scale: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(LR, HR) tensors (B, 3, h, w) in [0, 1]: flipped / rotated HR crops and their degraded copies."""
    lrs, hrs = [], []
    for _ in range(batch):
        image = images[rng.integers(len(images))]
        y, x = rng.integers(0, image.shape[0] - crop + 1), rng.integers(0, image.shape[1] - crop + 1)
        hr = np.rot90(image[y : y + crop, x : x + crop], k=int(rng.integers(4)))
        hr = np.ascontiguousarray(hr[:, ::-1] if rng.random() < 0.5 else hr)
        lrs.append(data.degrade(hr, rng, factor=scale))
        hrs.append(hr)
    as_tensor = lambda arrays: torch.from_numpy(np.stack(arrays).transpose(0, 3, 1, 2).astype(np.float32))  # noqa: E731
    return as_tensor(lrs), as_tensor(hrs)


def learning_rate(step: int, steps: int, peak: float, warmup: int = 50) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return 1e-5 + 0.5 * (peak - 1e-5) * (1 + math.cos(math.pi * min(1.0, progress)))


def train(out: Path, *, steps: int, batch: int, crop: int, lr: float, seed: int, scale: int) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    net, ema = build(scale), build(scale)
    ema.load_state_dict(net.state_dict())
    optimiser = torch.optim.Adam(net.parameters(), lr=lr, betas=(0.9, 0.99))
    images = [data.load(photo) for photo in data.train_photos()]
    images = [image for image in images if min(image.shape[:2]) >= crop]
    began = time.monotonic()
    with open(out / "loss.csv", "w", newline="") as log_file:
        log = csv.writer(log_file)
        log.writerow(["step", "l1", "lr", "seconds"])
        for step in range(steps):
            lr_batch, hr_batch = batch_of(images, rng, batch, crop, scale)
            loss = torch.nn.functional.l1_loss(net(lr_batch), hr_batch)
            for group in optimiser.param_groups:
                group["lr"] = learning_rate(step, steps, lr)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            with torch.no_grad():
                decay = min(0.999, (1 + step) / (10 + step))
                for e, p in zip(ema.parameters(), net.parameters(), strict=True):
                    e.mul_(decay).add_(p, alpha=1 - decay)
            seconds = time.monotonic() - began
            log.writerow([step + 1, f"{loss.item():.5f}", f"{optimiser.param_groups[0]['lr']:.3g}", f"{seconds:.1f}"])
            if (step + 1) % 50 == 0 or step + 1 == steps:
                log_file.flush()
                print(f"step {step + 1}/{steps} l1 {loss.item():.4f} {seconds:.0f} s", file=sys.stderr, flush=True)
    path = out / f"compact-x{scale}.safetensors"
    from safetensors.torch import save_file

    save_file({k: v.detach().contiguous() for k, v in ema.state_dict().items()}, str(path))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="run folder (loss log, the saved model)")
    parser.add_argument("--steps", type=int, default=1300)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--crop", type=int, default=96, help="HR crop side in pixels")
    parser.add_argument("--lr", type=float, default=1e-3, help="peak learning rate")
    parser.add_argument("--scale", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    path = train(args.out, steps=args.steps, batch=args.batch, crop=args.crop, lr=args.lr, seed=args.seed,
                 scale=args.scale)
    print(f"saved {path}")


if __name__ == "__main__":
    main()
