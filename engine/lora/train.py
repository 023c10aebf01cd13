"""Train an upscaling LoRA on a flow model's transformer (seed 000, "Using LoRA for Lightweight Refinement").

Each step takes a pair (engine.lora.pairs: high-res crop, and its degraded, downscaled, Lanczos-upsampled copy),
encodes both with the model's VAE (z_hr, z_up), re-noises the upsample at one of the stages' strengths s as the
upscale does, x_s = (1 - s)·z_up + s·eps, and teaches the transformer the straight flow from there to the
high-res latent: at a point x_t = z_hr + (t/s)(x_s - z_hr) of that path (t in (0, s]) the velocity is
v = (x_s - z_hr)/s, so the upscale's Euler steps from s down to 0 land on z_hr. Only LoRA layers (peft) on the
transformer's attention projections train; the VAE, the text encoders and the base weights stay frozen.

Defaults, and why (README "LoRAs" has the expected time and memory on real GPUs):
- rank 16, alpha = rank: the published upscaler/detail LoRAs are rank 16-64; 16 is ~0.1-0.5% of a 4-12B
  transformer, enough to re-aim its denoising at upsampling blur without forgetting what photos look like.
- learning rate 1e-4, AdamW (8-bit from bitsandbytes on CUDA, where it is installed): the usual rate for
  diffusion-transformer LoRAs at this rank; a 1/10 linear warm-up keeps the first steps from kicking the adapters.
- 1000 steps of batch 1 on 512x512 crops: a few dozen photos seen ~20-50 times each in random crops and
  degradations; 512 keeps a step under a second on a 24 GB GPU while the tiles the upscale denoises are the
  model's native size (the LoRA learns local restoration, which does not depend on the crop size).
- strengths 0.25 / 0.35 / 0.5: what the faithful / balanced / creative presets start the stages from.
- a validation PSNR (one-step estimate from the balanced strength, fixed noise, held-out photos) every 100
  steps, a resumable checkpoint every 250, gradient checkpointing on CUDA (it trades ~30% time for most of the
  activations' memory, which is what fits a 12B model's LoRA training in 24 GB with an fp8/GGUF base).
"""

from __future__ import annotations

import csv
import json
import math
import random
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from engine.errors import InvalidInput
from engine.lora.options import TrainOptions
from engine.lora.pairs import Pair, list_photos, load_photo, make_pair, split

# The transformer's attention projections in every family (FLUX.2's single blocks fuse q/k/v with the MLP).
TARGET_MODULES = (r".*\.(to_q|to_k|to_v|to_out\.0|add_q_proj|add_k_proj|add_v_proj|to_add_out|to_qkv_mlp_proj)$"
                  r"|.*single_transformer_blocks\.\d+\.attn\.to_out$")


@dataclass(frozen=True)
class Validation:
    loss: float  # velocity MSE on the held-out pairs
    psnr: float  # dB, the one-step estimate's decode against the high-res crop
    psnr_upsampled: float  # the Lanczos upsample itself, for scale
    psnr_vae: float  # the VAE's round trip of the high-res crop: the ceiling through this VAE


@dataclass
class TrainReport:
    out: Path
    steps: int
    start: Validation  # the base model, before training
    end: Validation
    losses: list[float] = field(default_factory=list)


def _checkpoints(out: Path) -> Path:
    return out.with_name(out.stem + ".checkpoints")


def _log_path(out: Path) -> Path:
    return out.with_name(out.stem + ".log.csv")


def _to_tensor(images: list[np.ndarray], device: torch.device) -> torch.Tensor:
    """(H, W, 3) in [0, 1] -> (B, 3, H, W) in [-1, 1]."""
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).to(device) * 2.0 - 1.0


def _optimizer(name: str, params: list[torch.Tensor], lr: float, device: torch.device) -> torch.optim.Optimizer:
    if name in ("auto", "adamw8bit") and device.type == "cuda":
        try:
            import bitsandbytes as bnb

            return bnb.optim.AdamW8bit(params, lr=lr)
        except ImportError:
            if name == "adamw8bit":
                raise InvalidInput("--optimizer adamw8bit needs bitsandbytes: `pip install bitsandbytes`") from None
    elif name == "adamw8bit":
        raise InvalidInput("--optimizer adamw8bit needs a CUDA GPU (bitsandbytes); use adamw here")
    return torch.optim.AdamW(params, lr=lr)


def target_modules(transformer: torch.nn.Module, which: str) -> str | list[str]:
    """peft's target_modules: the attention projections, or ("all") every linear layer of the blocks except
    their modulation (AdaLN) layers, which follow the timestep rather than the image."""
    if which == "attention":
        return TARGET_MODULES
    if which != "all":
        raise InvalidInput(f"unknown --targets {which!r}; use attention or all")
    return [name for name, module in transformer.named_modules() if isinstance(module, torch.nn.Linear)
            and re.search(r"(blocks|layers|refiner)\.\d+\.", name) and not re.search(r"norm|mod|adaLN", name)]


class Trainer:
    """One training run: the backend with a LoRA adapter on its transformer, the data, optimizer and log."""

    def __init__(self, options: TrainOptions, backend: Any | None = None) -> None:
        from peft import LoraConfig

        from engine.backends.loader import load_backend

        self.options = options.checked()
        photos = list_photos(options.photos, at_least=1 if options.val_photos else 2)
        if options.val_photos is not None:
            train, held = photos, list_photos(options.val_photos, at_least=1)
        else:
            train, held = split(photos, options.val_fraction)
        self.backend = backend or load_backend(options.model, device=options.device, dtype=options.dtype,
                                               base=options.base)
        backend = self.backend
        if not hasattr(backend, "pipe"):
            raise InvalidInput(f"{options.model} is not a flow model with a transformer; train-lora trains LoRAs "
                               "for FLUX.1, FLUX.2, SD3, Qwen-Image, Z-Image and Chroma models")
        multiple = backend.latent_multiple
        if options.size % multiple or options.size % options.factor:
            raise InvalidInput(f"--size {options.size} must be a multiple of {multiple} for this model")
        self.device = backend.device
        self.train_photos = [load_photo(p, options.max_side) for p in train]
        self.val_pairs = [make_pair(load_photo(p, options.max_side), options.size, options.factor, None)
                          for p in held]
        self.rng = np.random.default_rng(options.seed)
        transformer = backend.pipe.transformer
        transformer.requires_grad_(False)
        config = LoraConfig(r=options.rank, lora_alpha=options.rank, init_lora_weights="gaussian",
                            target_modules=target_modules(transformer, options.targets))
        transformer.add_adapter(config, adapter_name="uprez_train")
        self.params = [p for n, p in transformer.named_parameters() if "lora_" in n]
        for param in self.params:
            param.requires_grad_(True)
        checkpointing = options.gradient_checkpointing
        if checkpointing is None:
            checkpointing = self.device.type == "cuda"
        if checkpointing and getattr(transformer, "_supports_gradient_checkpointing", False):
            transformer.enable_gradient_checkpointing()
        self.optimizer = _optimizer(options.optimizer, self.params, options.learning_rate, self.device)
        warmup = max(1, options.steps // 10)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda i: min(1.0, (i + 1) / warmup))
        self.pool = [self._latents(self._random_pairs(1)) for _ in range(options.pool)]
        self.cond = backend.encode_prompt("")  # the upscale's own default: no prompt
        self.step = 0
        self.losses: list[float] = []
        self.val_noise = [torch.randn(1, *self._latent_shape(), generator=torch.Generator().manual_seed(1000 + i))
                          for i in range(len(self.val_pairs))]

    def _latent_shape(self) -> tuple[int, int, int]:
        with torch.no_grad():
            probe = self.backend.encode(torch.zeros(1, 3, self.options.size, self.options.size, device=self.device))
        return tuple(probe.shape[1:])  # type: ignore[return-value]

    # -- the loss ---------------------------------------------------------------------------------------
    def _latents(self, pairs: list[Pair]) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            z_hr = self.backend.encode(_to_tensor([p.hr for p in pairs], self.device))
            z_up = self.backend.encode(_to_tensor([p.upsampled for p in pairs], self.device))
        return z_hr, z_up

    def _velocity(self, x: torch.Tensor, sigma: float) -> torch.Tensor:
        return self.backend._predict(x, sigma, self.cond.positive, self.cond)  # noqa: SLF001 - with gradients

    def _random_pairs(self, count: int) -> list[Pair]:
        photos = [self.train_photos[int(self.rng.integers(len(self.train_photos)))] for _ in range(count)]
        return [make_pair(photo, self.options.size, self.options.factor, self.rng) for photo in photos]

    def _batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.pool:
            return self._latents(self._random_pairs(self.options.batch))
        chosen = [self.pool[int(self.rng.integers(len(self.pool)))] for _ in range(self.options.batch)]
        return torch.cat([c[0] for c in chosen]), torch.cat([c[1] for c in chosen])

    def train_step(self) -> float:
        options = self.options
        z_hr, z_up = self._batch()
        s = float(options.strengths[int(self.rng.integers(len(options.strengths)))])
        t = s * float(self.rng.uniform(0.05, 1.0))  # a point on the path: the upscale's later steps see these
        eps = torch.from_numpy(self.rng.standard_normal(z_up.shape).astype(np.float32)).to(self.device)
        x_s = (1.0 - s) * z_up + s * eps
        target = (x_s - z_hr) / s
        x_t = z_hr + (t / s) * (x_s - z_hr)
        with torch.enable_grad():
            loss = torch.nn.functional.mse_loss(self._velocity(x_t, t), target)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
        torch.nn.utils.clip_grad_norm_(self.params, 1.0)
        self.optimizer.step()
        self.scheduler.step()
        self.step += 1
        value = float(loss.detach())
        self.losses.append(value)
        return value

    @torch.no_grad()
    def validate(self) -> Validation:
        """On the held-out pairs, from the balanced strength with fixed noise: the velocity loss, and the PSNR of
        the one-step estimate x0 = x_s - s·v, of the Lanczos upsample, and of the VAE's own round trip of the
        high-res crop (the most any transformer can reach through this VAE)."""
        from engine.builtin.data import psnr

        s = self.options.strengths[len(self.options.strengths) // 2]
        losses, model, upsampled, ceiling = [], [], [], []
        for pair, noise in zip(self.val_pairs, self.val_noise, strict=True):
            z_hr, z_up = self._latents([pair])
            x_s = (1.0 - s) * z_up + s * noise.to(self.device)
            v = self._velocity(x_s, s).float()
            losses.append(float(torch.nn.functional.mse_loss(v, (x_s - z_hr) / s)))
            model.append(psnr(self._pixels(x_s - s * v), pair.hr))
            upsampled.append(psnr(pair.upsampled, pair.hr))
            ceiling.append(psnr(self._pixels(z_hr), pair.hr))
        return Validation(*(float(np.mean(v)) for v in (losses, model, upsampled, ceiling)))

    def _pixels(self, latent: torch.Tensor) -> np.ndarray:
        return (self.backend.decode(latent)[0].permute(1, 2, 0).cpu().numpy() + 1.0) / 2.0

    # -- saving and resuming ------------------------------------------------------------------------------
    def lora_state(self) -> dict[str, torch.Tensor]:
        """The adapter in diffusers' file layout (`transformer.<module>.lora_A/B.weight`), alpha folded in."""
        from peft.utils import get_peft_model_state_dict

        state = get_peft_model_state_dict(self.backend.pipe.transformer, adapter_name="uprez_train")
        return {f"transformer.{k}": v.detach().float().cpu().contiguous() for k, v in state.items()}

    def save_lora(self, path: Path) -> Path:
        from safetensors.torch import save_file

        meta = {k: str(v) for k, v in asdict(self.options).items() if k in ("model", "rank", "steps", "size")}
        meta.update(format="pt", trained_by="uprez train-lora", family=self.backend.family, step=str(self.step))
        tmp = path.with_name(path.name + ".part")
        save_file(self.lora_state(), str(tmp), metadata=meta)
        tmp.replace(path)  # never half a file under the real name
        return path

    def save_checkpoint(self) -> Path:
        folder = _checkpoints(self.options.out)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"step-{self.step:06d}.pt"
        torch.save({"step": self.step, "lora": self.lora_state(), "optimizer": self.optimizer.state_dict(),
                    "scheduler": self.scheduler.state_dict(), "rng": self.rng.bit_generator.state,
                    "losses": self.losses, "options": json.dumps(asdict(self.options), default=str)},
                   path.with_suffix(".part"))
        path.with_suffix(".part").replace(path)
        for old in sorted(folder.glob("step-*.pt"))[:-2]:  # the last two: one may be cut by a crash mid-write
            old.unlink()
        return path

    def resume(self) -> int:
        """Continue from the newest checkpoint next to --out, if any; returns the step it was at."""
        from peft.utils import set_peft_model_state_dict

        found = sorted(_checkpoints(self.options.out).glob("step-*.pt"))
        if not found:
            return 0
        saved = torch.load(found[-1], map_location="cpu", weights_only=False)
        state = {k.removeprefix("transformer."): v for k, v in saved["lora"].items()}
        set_peft_model_state_dict(self.backend.pipe.transformer, state, adapter_name="uprez_train")
        self.optimizer.load_state_dict(saved["optimizer"])
        self.scheduler.load_state_dict(saved["scheduler"])
        self.rng.bit_generator.state = saved["rng"]
        self.losses = list(saved["losses"])
        self.step = int(saved["step"])
        return self.step

    def remove_adapter(self) -> None:
        """Leave the backend as it was loaded (the bench applies the saved file to the same backend next)."""
        transformer = self.backend.pipe.transformer
        transformer.delete_adapters("uprez_train")
        transformer.requires_grad_(False)


LOG_FIELDS = ["step", "loss", "learning_rate", "val_loss", "val_psnr", "val_psnr_upsampled", "val_psnr_vae"]


def _val_row(v: Validation) -> dict[str, str]:
    return {"val_loss": f"{v.loss:.6f}", "val_psnr": f"{v.psnr:.3f}", "val_psnr_upsampled": f"{v.psnr_upsampled:.3f}",
            "val_psnr_vae": f"{v.psnr_vae:.3f}"}


def _log(path: Path, row: dict[str, Any]) -> None:
    new = not path.exists()
    with path.open("a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=LOG_FIELDS, restval="")
        if new:
            writer.writeheader()
        writer.writerow(row)


def train_lora(options: TrainOptions, *, backend: Any | None = None, progress: bool = True,
               on_step: Callable[[int, float], None] | None = None) -> TrainReport:
    """Train, logging every step to NAME.log.csv, validating every `val_every` steps and checkpointing every
    `save_every` next to --out; resumes from the newest checkpoint there; writes the LoRA to --out at the end."""
    from tqdm import tqdm

    random.seed(options.seed)
    torch.manual_seed(options.seed)
    trainer = Trainer(options, backend)
    options = trainer.options
    log = _log_path(options.out)
    options.out.parent.mkdir(parents=True, exist_ok=True)
    start = trainer.resume() if options.resume else 0
    if start == 0 and log.exists():
        log.unlink()  # a fresh run: the old log would interleave
    first = trainer.validate()
    if start == 0:
        _log(log, {"step": 0, **_val_row(first)})
    latest = first
    bar = tqdm(total=options.steps, initial=start, disable=not progress, desc="train-lora", unit="step")
    try:
        while trainer.step < options.steps:
            loss = trainer.train_step()
            row: dict[str, Any] = {"step": trainer.step, "loss": f"{loss:.6f}",
                                   "learning_rate": f"{trainer.scheduler.get_last_lr()[0]:.3g}"}
            if trainer.step % options.val_every == 0 or trainer.step == options.steps:
                latest = trainer.validate()
                row.update(_val_row(latest))
            _log(log, row)
            if trainer.step % options.save_every == 0 and trainer.step < options.steps:
                trainer.save_checkpoint()
            bar.set_postfix(loss=f"{loss:.4f}", val_loss=f"{latest.loss:.4f}", val_psnr=f"{latest.psnr:.2f}")
            bar.update(1)
            if on_step is not None:
                on_step(trainer.step, loss)
    finally:
        bar.close()
    trainer.save_lora(options.out)
    report = TrainReport(options.out, trainer.step, first, latest, trainer.losses)
    if backend is not None:
        trainer.remove_adapter()
    if not math.isfinite(latest.loss):
        raise InvalidInput("training diverged (validation PSNR is not finite); lower --learning-rate")
    return report
