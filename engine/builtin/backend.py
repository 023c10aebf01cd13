"""The built-in model behind the common backend interface: pixel space, conditioned on each stage's input."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any, ClassVar

import torch

from engine.backends.base import Conditioning, FlowBackend
from engine.builtin import block_grid
from engine.builtin.cpu import on_cpu
from engine.builtin.model import FlowSRNet, NetConfig
from engine.errors import ModelNotFound
from engine.schedule import ShiftRule
from engine.settings import StructureGuidance
from engine.work import WorkCosts

WEIGHTS = Path(__file__).resolve().parent / "weights"  # the shipped weights
CONFIG_FILE = "uprez-builtin.json"
WEIGHTS_FILE = "model.safetensors"
MIN_SIGMA = 1e-4  # velocities are (x - x0_hat) / sigma; the sampler never asks at sigma 0


def is_builtin_folder(path: Path) -> bool:
    return (path / CONFIG_FILE).is_file()


class BuiltinBackend(FlowBackend):
    """Latents are the pixels themselves in [-1, 1]; the stage's upsampled input conditions every step."""

    family: ClassVar[str] = "builtin"
    patch_size: ClassVar[int] = 2  # the network works on 2x2 pixel patches, so sides must be even
    default_strength: ClassVar[float] = 1.0  # trained from pure noise; the condition carries the input
    vae_tiling: ClassVar[bool] = False  # pixels are the latents: nothing to tile
    # Measured on the CPU per pixel against a model call: a Lanczos upsample 2 %, tensor conversions 0.2 %,
    # the final crop, conversions and packing about 1 %.
    work_costs: ClassVar[WorkCosts] = WorkCosts(model=1.0, encode=0.002, decode=0.002, resize=0.02, finish=0.01)
    # Its condition is the stage's input itself and it was trained for the plain sampler: no guidance.
    default_structure: ClassVar[StructureGuidance] = StructureGuidance()
    # v2 has two modes in one file: faithful (the flow map alone) and detailed (its adversarial LoRA, at the
    # scale cfg_scale names: 0 faithful, 1 as trained). The presets pick them (README model card).
    presets: ClassVar[dict[str, dict[str, Any]]] = {"faithful": {}, "balanced": {}, "creative": {"cfg_scale": 1.0}}
    default_cfg_scale: ClassVar[float] = 0.0  # no cfg_scale given: faithful (the recipe's fallback is 1.0)

    def __init__(self, net: FlowSRNet, info: dict[str, Any], *, source: str, device: torch.device,
                 dtype: torch.dtype, detail: dict[str, torch.Tensor] | None = None) -> None:
        super().__init__(source=source, device=device, dtype=dtype, vae_scale=1,
                         native_size=int(info.get("native_size", 512)), shift_rule=ShiftRule())
        self.net = net.to(device=device, dtype=dtype).eval()
        # How the network runs: on the CPU in channels-last, with bf16 where the CPU has it (engine/builtin/cpu.py).
        self.run_net = partial(on_cpu, device=self.device, dtype=dtype)
        self.info = info
        self.detail = detail or {}  # the detailed mode's LoRA weights (`detail.*`), none in a v1 folder
        self._detailed: dict[float, FlowSRNet] = {}  # merged networks per scale, built on first use

    def network(self, detail: float) -> FlowSRNet:
        """The faithful network, or a plain copy with the detail LoRA folded in at scale `detail`."""
        if detail == 0.0 or not self.detail:
            return self.net
        if detail not in self._detailed:
            from engine.builtin.detail import merged

            self._detailed = {detail: merged(self.net, self.detail, detail).eval()}  # keep one: a job's scale
        return self._detailed[detail]

    @property
    def default_steps(self) -> int:
        return int(self.info.get("default_steps", 1))

    @property
    def default_tile_size(self) -> int:
        # A convolutional network has no native size; tiles only bound memory (about 250 MB each). 1024 px
        # plus the overlap, so a power-of-two output splits into whole tiles (2048 = 2 x 2, not 3 x 3).
        return 1024 + self.default_tile_overlap

    @property
    def default_tile_overlap(self) -> int:
        # The receptive field reaches 36 px (18 convolutions at half resolution): 64 px hides every seam.
        return 64

    @property
    def vae_width(self) -> int:
        # Activations are `width` channels at half resolution: width / 4 floats per output pixel.
        return max(1, self.net.config.width // 4)

    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        return pixels.float()

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        return latent.float().clamp(-1.0, 1.0)

    def encode_prompt(self, prompt: str = "", negative_prompt: str | None = None, *, cfg_scale: float | None = None,
                      guidance: float | None = None) -> Conditioning:
        # No text; cfg_scale is the detailed mode's strength (the LoRA scale), None or 0 = faithful.
        return Conditioning(positive={}, extra={"detail": float(cfg_scale or 0.0)})

    def condition_stage(self, cond: Conditioning, latent: torch.Tensor, sigmas: Sequence[float] = ()) -> Conditioning:
        extra = {**cond.extra, "image": latent, "sigmas": tuple(float(s) for s in sigmas)}
        phase = block_grid.detect(latent) if self.net.config.grid_input else None
        if phase is not None:  # a spatial input: tiles and views get their part of it (the grid's phase there)
            extra["grid"] = block_grid.positions(*latent.shape[-2:], phase).to(latent.device)
        return replace(cond, extra=extra)

    @torch.no_grad()
    def velocity(self, x: torch.Tensor, sigma: float, cond: Conditioning) -> torch.Tensor:
        up = cond.extra["image"].to(self.device, self.dtype)
        sigmas = torch.full((x.shape[0],), sigma, device=self.device, dtype=self.dtype)
        steps = torch.full((x.shape[0],), step_size(sigma, cond.extra.get("sigmas", ())), device=self.device,
                           dtype=self.dtype)
        net = self.run_net(self.network(float(cond.extra.get("detail", 0.0))))  # engine/builtin/cpu.py
        grid = cond.extra.get("grid")
        x0_hat = net(x.to(self.device, self.dtype), up, sigmas, steps, grid).float()
        return (x.to(x0_hat.device) - x0_hat) / max(sigma, MIN_SIGMA)


def step_size(sigma: float, sigmas: Sequence[float]) -> float:
    """The flow map's jump at `sigma`: the gap to the next sigma of the stage's schedule; without a schedule,
    or past its end, one jump to the end (d = sigma)."""
    if len(sigmas) < 2:
        return sigma
    index = min(range(len(sigmas) - 1), key=lambda i: abs(sigmas[i] - sigma))
    if abs(sigmas[index] - sigma) > 1e-6:
        return sigma
    return float(sigmas[index] - sigmas[index + 1])


def save_builtin(net: FlowSRNet, folder: Path, info: dict[str, Any],
                 extra: dict[str, torch.Tensor] | None = None) -> Path:
    """Write weights (safetensors) and config (network sizes + defaults + provenance) into `folder`; `extra`
    adds tensors beside the network's (the detailed mode's `detail.*` weights)."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    tensors = {**net.state_dict(), **(extra or {})}
    save_file({k: v.detach().float().contiguous().cpu() for k, v in tensors.items()}, str(folder / WEIGHTS_FILE))
    (folder / CONFIG_FILE).write_text(json.dumps({**info, "net": net.config.to_dict()}, indent=2) + "\n")
    return folder


def load_builtin(folder: Path, *, source: str, device: torch.device, dtype: torch.dtype) -> BuiltinBackend:
    """The built-in model (or a training run's export) from a folder with config and safetensors weights."""
    from safetensors.torch import load_file

    config_path, weights_path = folder / CONFIG_FILE, folder / WEIGHTS_FILE
    if not config_path.is_file() or not weights_path.is_file():
        raise ModelNotFound(f"the built-in model's files are missing from {folder} ({CONFIG_FILE}, {WEIGHTS_FILE}); "
                            "reinstall Uprez, or train it with `python -m engine.builtin.train`")
    info = json.loads(config_path.read_text())
    net = FlowSRNet(NetConfig(**info.get("net", {})))
    try:
        tensors = load_file(str(weights_path))
        detail = {k: v for k, v in tensors.items() if k.startswith("detail.")}
        net.load_state_dict({k: v for k, v in tensors.items() if not k.startswith("detail.")})
    except (RuntimeError, OSError) as exc:
        raise ModelNotFound(f"{weights_path} does not fit the network in {config_path}: {exc}") from exc
    return BuiltinBackend(net, info, source=source, device=device, dtype=dtype, detail=detail)
