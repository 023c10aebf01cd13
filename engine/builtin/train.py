"""Train the built-in model: conditional flow matching on degraded/clean photo pairs, on the CPU.

    python -m engine.builtin.train --out runs/builtin            # resumes from runs/builtin/ckpt.pt if present
    python -m engine.builtin.train --out runs/builtin --export engine/builtin/weights

Each sample is a random crop of a training photo (HR), a degraded half-size copy of it (LR, see
`data.degrade`) and the Lanczos upscale of LR (the same conventional upscale the engine's stages use).
With x_sigma = (1 - sigma) HR + sigma eps, the network predicts HR from (x_sigma, up, sigma); the loss
is the mean squared error of that prediction, i.e. flow matching with the velocity (x_sigma - x0_hat)/sigma.
"""

from __future__ import annotations

import argparse
import csv
import math
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from engine.builtin import data
from engine.builtin.backend import save_builtin
from engine.builtin.model import FlowSRNet, NetConfig
from engine.pixels import conventional_resize

SIGMA_ONE_SHARE = 0.5  # half the samples at sigma = 1: the one-step start the model is used from by default
# Losses of images in [-1, 1] sit near 0.005; a step far above that is a blow-up, not a hard batch. A run at
# lr 2e-3 spiked to 4.7e5 once and never recovered, so such steps are skipped instead of taken.
MAX_SANE_LOSS = 1.0


def _crops(images: list[np.ndarray], rng: np.random.Generator, batch: int, crop: int) -> tuple[np.ndarray, np.ndarray]:
    """A batch of (HR, Lanczos-upsampled degraded LR) crops in [-1, 1], shaped (B, 3, crop, crop)."""
    hrs, ups = [], []
    for _ in range(batch):
        image = images[rng.integers(len(images))]
        y = rng.integers(0, image.shape[0] - crop + 1)
        x = rng.integers(0, image.shape[1] - crop + 1)
        hr = image[y : y + crop, x : x + crop]
        hr = np.rot90(hr, k=int(rng.integers(4)))
        if rng.random() < 0.5:
            hr = hr[:, ::-1]
        hr = np.ascontiguousarray(hr)
        lr = data.degrade(hr, rng, factor=2)
        hrs.append(hr)
        ups.append(conventional_resize(lr, (crop, crop)))
    to_tensor = lambda arrays: np.stack(arrays).transpose(0, 3, 1, 2) * 2.0 - 1.0  # noqa: E731
    return to_tensor(hrs).astype(np.float32), to_tensor(ups).astype(np.float32)


def _learning_rate(step: int, steps: int, peak: float, warmup: int = 200) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return 1e-5 + 0.5 * (peak - 1e-5) * (1 + math.cos(math.pi * min(1.0, progress)))


def train(out: Path, *, steps: int, batch: int, crop: int, lr: float, seed: int, config: NetConfig,
          checkpoint_every: int = 250, images: list[np.ndarray] | None = None) -> FlowSRNet:
    """Train (or resume) into `out`; returns the EMA network, which is what gets exported.

    `images` (float (H, W, 3) in [0, 1]) replaces the training photos, for quick checks of the loop.
    """
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    net, ema = FlowSRNet(config), FlowSRNet(config)
    ema.load_state_dict(net.state_dict())
    optimiser = torch.optim.Adam(net.parameters(), lr=lr)
    rng = np.random.default_rng(seed)
    start, elapsed = 0, 0.0
    checkpoint = out / "ckpt.pt"
    if checkpoint.is_file():
        state = torch.load(checkpoint, weights_only=False)
        net.load_state_dict(state["net"])
        ema.load_state_dict(state["ema"])
        optimiser.load_state_dict(state["optimiser"])
        rng.bit_generator.state = state["rng"]
        torch.set_rng_state(state["torch_rng"])
        start, elapsed = state["step"], state["elapsed"]
    if images is None:
        images = [data.load(photo) for photo in data.train_photos()]
    images = [image for image in images if min(image.shape[:2]) >= crop]
    if not images:
        raise ValueError(f"no training image is at least {crop} px a side; install the data packages (README)")
    log_path = out / "loss.csv"
    new_log = not log_path.is_file() or start == 0
    with open(log_path, "w" if new_log else "a", newline="") as log_file:
        log = csv.writer(log_file)
        if new_log:
            log.writerow(["step", "loss", "lr", "seconds"])
        began = time.monotonic() - elapsed
        bar = tqdm(range(start, steps), initial=start, total=steps, desc="training", unit="step")
        for step in bar:
            hr, up = (torch.from_numpy(a) for a in _crops(images, rng, batch, crop))
            sigma = torch.rand(batch)
            sigma[torch.rand(batch) < SIGMA_ONE_SHARE] = 1.0
            eps = torch.randn_like(hr)
            s = sigma[:, None, None, None]
            x0_hat = net((1 - s) * hr + s * eps, up, sigma)
            loss = torch.mean((x0_hat - hr) ** 2)
            if not torch.isfinite(loss) or loss.item() > MAX_SANE_LOSS:
                log.writerow([step + 1, f"{loss.item():.6f}", "skipped", f"{time.monotonic() - began:.1f}"])
                continue
            for group in optimiser.param_groups:
                group["lr"] = _learning_rate(step, steps, lr)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
            optimiser.step()
            with torch.no_grad():
                decay = min(0.999, (1 + step) / (10 + step))  # EMA warms up, so early exports are usable
                for e, p in zip(ema.parameters(), net.parameters(), strict=True):
                    e.mul_(decay).add_(p, alpha=1 - decay)
            log.writerow([step + 1, f"{loss.item():.6f}", f"{optimiser.param_groups[0]['lr']:.6g}",
                          f"{time.monotonic() - began:.1f}"])
            bar.set_postfix(loss=f"{loss.item():.4f}")
            if (step + 1) % checkpoint_every == 0 or step + 1 == steps:
                log_file.flush()
                torch.save({"net": net.state_dict(), "ema": ema.state_dict(), "optimiser": optimiser.state_dict(),
                            "rng": rng.bit_generator.state, "torch_rng": torch.get_rng_state(), "step": step + 1,
                            "elapsed": time.monotonic() - began}, checkpoint)
    return ema


def main() -> None:
    parser = argparse.ArgumentParser(description="Train Uprez's built-in flow-matching upscaler on the CPU.")
    parser.add_argument("--out", type=Path, default=Path("runs/builtin"), help="run folder (checkpoint, loss log)")
    parser.add_argument("--steps", type=int, default=9000)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--crop", type=int, default=96, help="HR crop side in pixels (even)")
    parser.add_argument("--lr", type=float, default=1e-3, help="peak learning rate (2e-3 diverged)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--export", type=Path, help="also write the EMA weights as a loadable model folder here")
    parser.add_argument("--default-steps", type=int, default=1, help="sampling steps the exported model defaults to")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = NetConfig()
    ema = train(args.out, steps=args.steps, batch=args.batch, crop=args.crop, lr=args.lr, seed=args.seed,
                config=config)
    info = {"default_steps": args.default_steps, "native_size": 512,
            "training": {"steps": args.steps, "batch": args.batch, "crop": args.crop, "lr": args.lr,
                         "seed": args.seed, "photos": len(data.train_photos())}}
    folder = save_builtin(ema, args.out / "export", info)
    if args.export:
        save_builtin(ema, args.export, info)
        folder = args.export
    print(f"exported {folder}")


if __name__ == "__main__":
    main()
