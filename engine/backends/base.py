"""The one interface every model backend implements: diffusers families and the built-in model alike."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

import torch

from engine.schedule import ShiftRule
from engine.settings import StructureGuidance
from engine.tile_grid import Window
from engine.work import WorkCosts


@dataclass(frozen=True)
class Conditioning:
    """What steers one job besides the latent: encoded text (and, with CFG, the negative), per family."""

    positive: dict[str, Any]
    negative: dict[str, Any] | None = None
    cfg_scale: float = 1.0  # real classifier-free guidance (SD3, Qwen-Image, Z-Image); 1 = off
    distilled_guidance: float | None = None  # FLUX-dev's distilled guidance (settings' `guidance`); None: none
    extra: dict[str, Any] = field(default_factory=dict)  # per-stage inputs, e.g. the built-in model's image

    def map_spatial(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> Conditioning:
        """This conditioning with `fn` applied to its spatial inputs (latent-sized (B, C, h, w) tensors in
        `extra`): how tiles and dilated views get the part of the condition that lies under them."""
        if not self.extra:
            return self
        return replace(self, extra={key: fn(value) if isinstance(value, torch.Tensor) and value.ndim == 4 else value
                                    for key, value in self.extra.items()})


class FlowBackend(ABC):
    """A loaded flow-matching model: encode, decode, velocity, conditioning and its geometry.

    Latents cross this interface as unpacked float32 (B, C, h, w) tensors in the model's normalised
    space, and velocities follow diffusers' convention v ≈ eps - x0, whatever the model does inside.
    Backends hold no per-job state: one loaded backend serves every job.
    """

    family: ClassVar[str]
    patch_size: ClassVar[int] = 2
    default_strength: ClassVar[float] = 0.35  # faithful: the input's structure survives the re-noise
    vae_tiling: ClassVar[bool] = True  # large images are encoded and decoded in tiles (False: the VAE is pointwise)
    work_costs: ClassVar[WorkCosts] = WorkCosts()  # what weighs the progress fraction (engine.work)
    # Structure guidance unless a job says otherwise (README "Structure guidance" says why these).
    default_structure: ClassVar[StructureGuidance] = StructureGuidance(direction_alignment=1.0, match_statistics=True)
    # What the editors' presets mean for this model: settings used where the job leaves them None.
    # Balanced is the model's defaults; faithful re-noises less, creative more with a looser low band.
    presets: ClassVar[dict[str, dict[str, Any]]] = {
        "faithful": {"strength": 0.25},
        "balanced": {},
        "creative": {"strength": 0.5, "direction_alignment": 0.5},
    }

    def __init__(self, *, source: str, device: torch.device, dtype: torch.dtype, vae_scale: int, native_size: int,
                 shift_rule: ShiftRule) -> None:
        self.source = source
        self.device = device
        self.dtype = dtype
        self.vae_scale = vae_scale
        self.native_size = native_size
        self.shift_rule = shift_rule

    # -- geometry ---------------------------------------------------------------------------------
    @property
    def latent_multiple(self) -> int:
        """Pixel sizes the model accepts are multiples of this (VAE factor x patch size)."""
        return self.vae_scale * self.patch_size

    def tokens_for(self, latent_h: int, latent_w: int) -> int:
        return (latent_h // self.patch_size) * (latent_w // self.patch_size)

    @property
    def native_tokens(self) -> int:
        """Token count the model was trained at: the shift exponent mu is fixed here, never extrapolated."""
        side = self.native_size // self.latent_multiple
        return side * side

    @property
    def default_tile_size(self) -> int:
        """Pixel side of a denoising tile: the native size, where the model knows how to compose an image."""
        return self.native_size

    @property
    def default_tile_overlap(self) -> int:
        """Pixels neighbouring tiles share: a quarter tile, wide enough for the blend to hide seams."""
        return self.default_tile_size // 4

    @property
    def default_steps(self) -> int:
        """Length of the full schedule the model was tuned for; the upscale runs only its tail."""
        return 28

    @property
    def vae_module(self) -> torch.nn.Module | None:
        """The VAE as a torch module, so tiled encode/decode can share its normalisation statistics; None if none."""
        return None

    @property
    @abstractmethod
    def vae_width(self) -> int:
        """Channels of the widest full-resolution layers, for memory estimates."""

    # -- the model --------------------------------------------------------------------------------
    @abstractmethod
    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) in [-1, 1] -> normalised latent (B, C, H/f, W/f), float32."""

    @abstractmethod
    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        """Normalised latent -> (B, 3, H, W) in [-1, 1], float32."""

    @abstractmethod
    def encode_prompt(self, prompt: str = "", negative_prompt: str | None = None, *, cfg_scale: float | None = None,
                      guidance: float | None = None) -> Conditioning:
        """Text conditioning, encoded once per job."""

    @abstractmethod
    def velocity(self, x: torch.Tensor, sigma: float, cond: Conditioning) -> torch.Tensor:
        """Flow velocity v(x_sigma, sigma) ≈ eps - x0 for unpacked float32 latents."""

    def condition_stage(self, cond: Conditioning, latent: torch.Tensor, sigmas: Sequence[float] = ()) -> Conditioning:
        """Add what a stage's input gives the model (its encoded upsampled image); text-only models need nothing.
        `sigmas` is the stage's schedule, for flow maps that take the step size (the built-in model)."""
        return cond

    def crop_condition(self, cond: Conditioning, windows: Sequence[Window]) -> Conditioning:
        """The conditioning of a batch of tiles: spatial inputs (latent-sized (B, C, h, w) tensors in `extra`)
        cut to each window and stacked along the batch, in the windows' order."""
        return cond.map_spatial(lambda value: torch.cat([value[(..., *w.slices)] for w in windows]))
