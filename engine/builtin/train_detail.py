"""Train the built-in model's detailed mode: LoRA extra weights on the frozen faithful flow map, adversarially.

    python -m engine.builtin.train_detail --base runs/v2/export --out runs/detail --export engine/builtin/weights

Each step draws the same pairs and flow-map states as `train` (the model's own trajectory, a random jump d
of 1, 1/2 or 1/4), predicts the clean image with the adapted network, and takes one step of a tiny patch
discriminator (hinge loss, R1 penalty on real images every R1_EVERY steps, lazily scaled) and one of the
LoRA weights: L1 to the photo plus ADV_WEIGHT times the hinge generator loss. The faithful weights never
change, so the exported file holds both modes: scale 0 is faithful exactly. Seeded and resumable.
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from engine.builtin import data
from engine.builtin.backend import CONFIG_FILE, WEIGHTS_FILE, save_builtin
from engine.builtin.cpu import fast_bf16
from engine.builtin.detail import Discriminator, hinge_d_loss, lora_state, r1_penalty, with_lora
from engine.builtin.model import FlowSRNet, NetConfig
from engine.builtin.train import _channels_last, _crops, flow_map_batch, grid_positions, precision

ADV_WEIGHT = 0.05
R1_GAMMA, R1_EVERY = 0.01, 4  # 0.5 held D flat at 0 (R1 read 0, hinge 2.0 for 50 steps)


def load_net(folder: Path) -> tuple[FlowSRNet, dict]:
    from safetensors.torch import load_file

    info = json.loads((folder / CONFIG_FILE).read_text())
    net = FlowSRNet(NetConfig(**info["net"]))
    state = {k: v for k, v in load_file(str(folder / WEIGHTS_FILE)).items() if not k.startswith("detail.")}
    net.load_state_dict(state)
    return net, info


def train_detail(base: Path, out: Path, *, steps: int, batch: int, crop: int, lr: float, seed: int,
                 adv_weight: float = ADV_WEIGHT, checkpoint_every: int = 25,
                 images: list[np.ndarray] | None = None, bf16: bool = False) -> FlowSRNet:
    """Train (or resume) the LoRA of the network in `base` into `out`; returns the adapted network. `bf16`:
    the networks' convolutions in bfloat16 (`train.precision`), except the R1 penalty's double backward."""
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    net, _ = load_net(base)
    adapted, trainable = with_lora(net)
    discriminator = Discriminator()
    if bf16:
        adapted.to(memory_format=torch.channels_last)
        discriminator.to(memory_format=torch.channels_last)
    g_opt = torch.optim.Adam(trainable, lr=lr, betas=(0.0, 0.99))
    d_opt = torch.optim.Adam(discriminator.parameters(), lr=lr, betas=(0.0, 0.99))
    rng = np.random.default_rng(seed)
    start, elapsed = 0, 0.0
    checkpoint = out / "ckpt.pt"
    if checkpoint.is_file():
        state = torch.load(checkpoint, weights_only=False)
        adapted.load_state_dict(state["adapted"])
        discriminator.load_state_dict(state["discriminator"])
        g_opt.load_state_dict(state["g_opt"])
        d_opt.load_state_dict(state["d_opt"])
        rng.bit_generator.state = state["rng"]
        torch.set_rng_state(state["torch_rng"])
        start, elapsed = state["step"], state["elapsed"]
    if images is None:
        images = [np.round(data.load(photo) * 255.0).astype(np.uint8) for photo in data.train_photos()]
    images = [image for image in images if min(image.shape[:2]) >= crop]
    log_path = out / "loss.csv"
    new_log = not log_path.is_file() or start == 0
    with open(log_path, "w" if new_log else "a", newline="") as log_file:
        log = csv.writer(log_file)
        if new_log:
            log.writerow(["step", "l1", "g_adv", "d_loss", "r1", "seconds"])
        began = time.monotonic() - elapsed
        bar = tqdm(range(start, steps), initial=start, total=steps, desc="detail", unit="step")
        for step in bar:
            hr, up = (torch.from_numpy(a) for a in _crops(images, rng, batch, crop))
            grid = grid_positions(up) if net.config.grid_input else None
            if bf16:
                hr, up = _channels_last(hr, up)
            eps = torch.randn_like(hr)
            with precision(bf16):
                x, sigma, d, _ = flow_map_batch(adapted, hr, up, eps, rng, consistency=False, grid=grid)
                fake = adapted(x, up, torch.full((batch,), sigma), torch.full((batch,), d), grid).float()
                # Discriminator: hinge, and every R1_EVERY steps the R1 penalty (scaled up, as StyleGAN2's lazy R1).
                d_loss = hinge_d_loss(discriminator(hr, up).float(), discriminator(fake.detach(), up).float())
            r1 = torch.zeros(())
            if step % R1_EVERY == 0:
                r1 = r1_penalty(discriminator, hr, up)
                d_loss = d_loss + R1_GAMMA / 2 * r1 * R1_EVERY
            d_opt.zero_grad(set_to_none=True)
            d_loss.backward()
            d_opt.step()
            # Generator (the LoRA only): stay near the photo, and fool the discriminator.
            l1 = F.l1_loss(fake, hr)
            with precision(bf16):
                g_adv = -discriminator(fake, up).float().mean()
            g_opt.zero_grad(set_to_none=True)
            (l1 + adv_weight * g_adv).backward()
            torch.nn.utils.clip_grad_norm_(trainable, 1.0)
            g_opt.step()
            log.writerow([step + 1, f"{l1.item():.5f}", f"{g_adv.item():.4f}", f"{d_loss.item():.4f}",
                          f"{r1.item():.4f}", f"{time.monotonic() - began:.1f}"])
            bar.set_postfix(l1=f"{l1.item():.4f}", d=f"{d_loss.item():.3f}")
            if (step + 1) % checkpoint_every == 0 or step + 1 == steps:
                log_file.flush()
                torch.save({"adapted": adapted.state_dict(), "discriminator": discriminator.state_dict(),
                            "g_opt": g_opt.state_dict(), "d_opt": d_opt.state_dict(), "rng": rng.bit_generator.state,
                            "torch_rng": torch.get_rng_state(), "step": step + 1,
                            "elapsed": time.monotonic() - began}, checkpoint)
    return adapted


def export(base: Path, adapted: FlowSRNet, folder: Path, recipe: dict) -> Path:
    """The faithful network of `base` plus the adapted network's LoRA as `detail.*`, in one model folder."""
    net, info = load_net(base)
    info = {**{k: v for k, v in info.items() if k != "net"}, "detail": recipe}
    return save_builtin(net, folder, info, extra=lora_state(adapted))


def main() -> None:
    parser = argparse.ArgumentParser(description="Train the built-in model's detailed mode (LoRA, adversarial).")
    parser.add_argument("--base", type=Path, required=True, help="the faithful model folder (stays unchanged)")
    parser.add_argument("--out", type=Path, default=Path("runs/detail"), help="run folder (checkpoint, loss log)")
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--crop", type=int, default=64)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--adv-weight", type=float, default=ADV_WEIGHT)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--bf16", choices=("auto", "on", "off"), default="auto",
                        help="bfloat16 convolutions (auto: where the CPU has them in hardware)")
    parser.add_argument("--export", type=Path, help="also write base + detail weights as a model folder here")
    parser.add_argument("--export-base", type=Path,
                        help="the faithful folder the export carries (default --base): a later fine-tune of it")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    adapted = train_detail(args.base, args.out, steps=args.steps, batch=args.batch, crop=args.crop, lr=args.lr,
                           seed=args.seed, adv_weight=args.adv_weight,
                           bf16=args.bf16 == "on" or (args.bf16 == "auto" and fast_bf16()))
    recipe = {"steps": args.steps, "batch": args.batch, "crop": args.crop, "lr": args.lr, "seed": args.seed,
              "adv_weight": args.adv_weight, "r1_gamma": R1_GAMMA, "rank": 8}
    # The LoRA is a set of weight deltas; trained on one faithful network it carries over to a short fine-tune
    # of that network (the v2 run: trained on v1 extended to v2 while the faithful run went on).
    base = args.export_base or args.base
    recipe["trained_on"] = str(args.base)
    folder = export(base, adapted, args.out / "export", recipe)
    if args.export:
        folder = export(base, adapted, args.export, recipe)
    print(f"exported {folder}")


if __name__ == "__main__":
    main()
