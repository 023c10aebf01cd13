"""Train the built-in model: conditional flow matching on degraded/clean photo pairs, on the CPU.

    python -m engine.builtin.train --out runs/builtin            # resumes from runs/builtin/ckpt.pt if present
    python -m engine.builtin.train --out runs/builtin --export engine/builtin/weights

Each sample is a random crop of a training photo (HR), a degraded half-size copy of it (LR, see
`data.degrade`) and the Lanczos upscale of LR (the same conventional upscale the engine's stages use).
With x_sigma = (1 - sigma) HR + sigma eps, the network predicts HR from (x_sigma, up, sigma); the loss
is the mean squared error of that prediction, i.e. flow matching with the velocity (x_sigma - x0_hat)/sigma.

v2 (a network with `step_input`, fine-tuned from v1 with `--init`) is a Shortcut flow map (seed 004):
x0_hat(x, sigma, d) is the clean image a jump from sigma to sigma - d lands on. Each batch is either
plain flow matching (d = 0, FLOW_MATCHING_SHARE) or a jump d from the ladder STEP_LADDER, taken at a
state of the model's own d-step trajectory (no gradient through it). That jump is trained towards HR
and, for d above the ladder's floor, towards the self-consistency target: where two jumps of d/2 land
(the model's own, no gradient). So 1, 2 and 4 steps agree, and each step sees the kind of state the
sampler really hands it rather than HR plus fresh noise, which is what made v1's extra steps cost PSNR.
"""

from __future__ import annotations

import argparse
import csv
import math
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from engine.builtin import block_grid, data
from engine.builtin.backend import WEIGHTS_FILE, save_builtin
from engine.builtin.cpu import fast_bf16
from engine.builtin.model import FlowSRNet, NetConfig
from engine.pixels import conventional_resize

WARMUP = 200
SIGMA_ONE_SHARE = 0.5  # half the samples at sigma = 1: the one-step start the model is used from by default
# Losses of images in [-1, 1] sit near 0.005; a step far above that is a blow-up, not a hard batch. A run at
# lr 2e-3 spiked to 4.7e5 once and never recovered, so such steps are skipped instead of taken.
MAX_SANE_LOSS = 1.0
FLOW_MATCHING_SHARE = 0.2  # batches of plain flow matching at d = 0 (v1's objective): the flow stays a flow
# (jump d, share of the flow-map batches). The one-step jump is what every user gets by default, so it gets
# most of them (the v2 run of stop 14 had 0.5/0.25/0.25: its 2- and 4-step results matched within 0.13 dB).
STEP_LADDER = ((1.0, 0.6), (0.5, 0.2), (0.25, 0.2))
# The step-matching term for inputs with a block grid (`grid_edge_loss`), against a squared error near 0.004:
# its gradient per pixel is then about the squared error's.
GRID_EDGE_WEIGHT = 0.03
CONSISTENCY_SHARE = 0.5  # of the flow-map batches with d above the ladder's floor: add the two-half-jump target


def _crops(images: list[np.ndarray], rng: np.random.Generator, batch: int, crop: int) -> tuple[np.ndarray, np.ndarray]:
    """A batch of (HR, Lanczos-upsampled degraded LR) crops in [-1, 1], shaped (B, 3, crop, crop)."""
    hrs, ups = [], []
    for _ in range(batch):
        image = images[rng.integers(len(images))]
        y = rng.integers(0, image.shape[0] - crop + 1)
        x = rng.integers(0, image.shape[1] - crop + 1)
        hr = image[y : y + crop, x : x + crop]
        if hr.dtype == np.uint8:
            hr = hr.astype(np.float32) / 255.0
        hr = np.rot90(hr, k=int(rng.integers(4)))
        if rng.random() < 0.5:
            hr = hr[:, ::-1]
        hr = np.ascontiguousarray(hr)
        lr = data.degrade(hr, rng, factor=2)
        hrs.append(hr)
        ups.append(conventional_resize(lr, (crop, crop)))
    to_tensor = lambda arrays: np.stack(arrays).transpose(0, 3, 1, 2) * 2.0 - 1.0  # noqa: E731
    return to_tensor(hrs).astype(np.float32), to_tensor(ups).astype(np.float32)


def grid_positions(up: torch.Tensor) -> torch.Tensor:
    """`block_grid.positions` of each crop in `up` (B, 3, H, W), found as the backend finds them in a stage's
    input, so the network learns from the detector's misses and false finds as well as its hits."""
    height, width = up.shape[-2:]
    return torch.cat([block_grid.positions(height, width, block_grid.detect(one[None])) for one in up])


def grid_edge_loss(x0_hat: torch.Tensor, hr: torch.Tensor, grid: torch.Tensor | None) -> torch.Tensor:
    """Mean absolute difference of horizontal and vertical pixel steps between prediction and photo, over the
    crops whose input showed a block grid. Squared error barely sees a step of two levels at a block border
    (stop 16's first 2000 steps with the grid input left the JPEG-60 grid at 1.71); this term weighs each
    spurious step by its size, inside the blocks as at their borders."""
    if grid is None:
        return x0_hat.new_zeros(())
    known = (grid[:, 0, 0, 0] != block_grid.NO_GRID).to(x0_hat.dtype)
    if not known.any():
        return x0_hat.new_zeros(())
    across = (x0_hat.diff(dim=-1) - hr.diff(dim=-1)).abs().mean(dim=(1, 2, 3))
    down = (x0_hat.diff(dim=-2) - hr.diff(dim=-2)).abs().mean(dim=(1, 2, 3))
    return ((across + down) * known).sum() / known.sum()


def jump(x: torch.Tensor, x0_hat: torch.Tensor, sigma: float, d: float) -> torch.Tensor:
    """Where the Euler step of the velocity (x - x0_hat) / sigma lands after a jump of d (to sigma - d)."""
    return x - d * (x - x0_hat) / sigma


def flow_map_batch(net: FlowSRNet, hr: torch.Tensor, up: torch.Tensor, eps: torch.Tensor,
                   rng: np.random.Generator, consistency: bool = True, grid: torch.Tensor | None = None,
                   ) -> tuple[torch.Tensor, float, float, torch.Tensor | None]:
    """One Shortcut batch: (state x at sigma, sigma, jump d, self-consistency target or None).

    The state is the model's own trajectory of d-jumps from pure noise, a random number of jumps in.
    `grid`: the crops' block positions (`grid_positions`) for a network with `grid_input`."""
    steps, shares = zip(*STEP_LADDER, strict=True)
    d = float(steps[rng.choice(len(steps), p=np.array(shares) / sum(shares))])
    jumps = int(rng.integers(round(1.0 / d)))
    batch = hr.shape[0]
    x, sigma = eps, 1.0
    with torch.no_grad():
        for _ in range(jumps):
            x0 = net(x, up, torch.full((batch,), sigma), torch.full((batch,), d), grid)
            x, sigma = jump(x, x0, sigma, d), sigma - d
    target = None
    if consistency and d > min(steps) and rng.random() < CONSISTENCY_SHARE:
        half = d / 2
        with torch.no_grad():
            x0a = net(x, up, torch.full((batch,), sigma), torch.full((batch,), half), grid)
            middle = jump(x, x0a, sigma, half)
            x0b = net(middle, up, torch.full((batch,), sigma - half), torch.full((batch,), half), grid)
            # The average velocity of the two half jumps, as the x0 the whole jump must imply.
            velocity = ((x - x0a) / sigma + (middle - x0b) / (sigma - half)) / 2
            target = x - sigma * velocity
    return x, sigma, d, target


def precision(bf16: bool) -> torch.autocast | nullcontext:
    """Where the network's convolutions run in bfloat16 (a CPU with AMX or AVX-512 BF16, channels-last
    tensors): 2.7x faster training steps here (0.41 s against 1.12 s for 16 crops of 96 px). Weights, the
    optimiser and the loss stay float32; the network's `up +` residual promotes its output to float32."""
    return torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else nullcontext()


def _channels_last(*tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    return tuple(t.contiguous(memory_format=torch.channels_last) for t in tensors)


def _learning_rate(step: int, steps: int, peak: float, warmup: int = WARMUP) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return 1e-5 + 0.5 * (peak - 1e-5) * (1 + math.cos(math.pi * min(1.0, progress)))


def initial_weights(net: FlowSRNet, folder: Path) -> None:
    """Load a saved model's weights into `net`; only the v2 step embedding may be missing (v1 -> v2), and a
    head without the block-grid inputs gets zero weights for them (the network's function is unchanged)."""
    from safetensors.torch import load_file

    state = {k: v for k, v in load_file(str(folder / WEIGHTS_FILE)).items() if not k.startswith("detail.")}
    head = net.head.weight
    if state["head.weight"].shape[1] < head.shape[1]:
        grown = torch.zeros_like(head)
        grown[:, : state["head.weight"].shape[1]] = state["head.weight"]
        state["head.weight"] = grown
    missing, unexpected = net.load_state_dict(state, strict=False)
    if unexpected or any(not key.startswith("step_embed.") for key in missing):
        raise ValueError(f"{folder} does not fit this network: missing {missing}, unexpected {unexpected}")


def train(out: Path, *, steps: int, batch: int, crop: int, lr: float, seed: int, config: NetConfig,
          checkpoint_every: int = 250, images: list[np.ndarray] | None = None, init: Path | None = None,
          ema_decay: float = 0.999, warmup: int = WARMUP, bf16: bool = False) -> FlowSRNet:
    """Train (or resume) into `out`; returns the EMA network, which is what gets exported.

    `images` (float (H, W, 3) in [0, 1], or uint8) replaces the training photos, for quick checks of the
    loop. `init` is a model folder to fine-tune from (a v1 folder for a v2 network). `bf16`: see `precision`.
    """
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    net, ema = FlowSRNet(config), FlowSRNet(config)
    if init is not None:
        initial_weights(net, init)
    ema.load_state_dict(net.state_dict())
    if bf16:
        net.to(memory_format=torch.channels_last)
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
        # uint8 in memory (the photos are 8-bit anyway): a quarter of float32's 1 GB for 50 photos.
        images = [np.round(data.load(photo) * 255.0).astype(np.uint8) for photo in data.train_photos()]
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
            grid = grid_positions(up) if config.grid_input else None
            if bf16:
                hr, up = _channels_last(hr, up)
            eps = torch.randn_like(hr)
            with precision(bf16):
                target = None
                if config.step_input and rng.random() >= FLOW_MATCHING_SHARE:
                    x, at, d, target = flow_map_batch(net, hr, up, eps, rng, grid=grid)
                    x0_hat = net(x, up, torch.full((batch,), at), torch.full((batch,), d), grid).float()
                else:
                    sigma = torch.rand(batch)
                    sigma[torch.rand(batch) < SIGMA_ONE_SHARE] = 1.0
                    s = sigma[:, None, None, None]
                    zero = torch.zeros(batch) if config.step_input else None  # d = 0: the instantaneous flow
                    x0_hat = net((1 - s) * hr + s * eps, up, sigma, zero, grid).float()
                loss = torch.mean((x0_hat - hr) ** 2) + GRID_EDGE_WEIGHT * grid_edge_loss(x0_hat, hr, grid)
                if target is not None:
                    loss = loss + torch.mean((x0_hat - target.float()) ** 2)
            if not torch.isfinite(loss) or loss.item() > MAX_SANE_LOSS:
                log.writerow([step + 1, f"{loss.item():.6f}", "skipped", f"{time.monotonic() - began:.1f}"])
                continue
            for group in optimiser.param_groups:
                group["lr"] = _learning_rate(step, steps, lr, warmup)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
            optimiser.step()
            with torch.no_grad():
                decay = min(ema_decay, (1 + step) / (10 + step))  # EMA warms up, so early exports are usable
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
    parser.add_argument("--init", type=Path, help="a model folder to fine-tune from (v1's weights for v2)")
    parser.add_argument("--v1", action="store_true", help="v1's network and objective (no step-size input)")
    parser.add_argument("--no-grid-input", action="store_true",
                        help="leave out the JPEG block-position input (stop 14's v2 network)")
    parser.add_argument("--ema-decay", type=float, default=0.999)
    parser.add_argument("--warmup", type=int, default=WARMUP, help="steps of linear learning-rate warm-up")
    parser.add_argument("--bf16", choices=("auto", "on", "off"), default="auto",
                        help="bfloat16 convolutions (auto: where the CPU has them in hardware)")
    parser.add_argument("--checkpoint-every", type=int, default=250, help="steps between resumable checkpoints")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = NetConfig(step_input=not args.v1, grid_input=not (args.v1 or args.no_grid_input))
    bf16 = args.bf16 == "on" or (args.bf16 == "auto" and fast_bf16())
    ema = train(args.out, steps=args.steps, batch=args.batch, crop=args.crop, lr=args.lr, seed=args.seed,
                config=config, init=args.init, ema_decay=args.ema_decay, checkpoint_every=args.checkpoint_every,
                warmup=args.warmup, bf16=bf16)
    info = {"default_steps": args.default_steps, "native_size": 512,
            "training": {"steps": args.steps, "batch": args.batch, "crop": args.crop, "lr": args.lr,
                         "seed": args.seed, "photos": len(data.train_photos()), "ema_decay": args.ema_decay,
                         "warmup": args.warmup, "bf16": bf16,
                         "init": None if args.init is None else "v1 (9000 steps, README model card)"}}
    folder = save_builtin(ema, args.out / "export", info)
    if args.export:
        save_builtin(ema, args.export, info)
        folder = args.export
    print(f"exported {folder}")


if __name__ == "__main__":
    main()
