"""The one interface every model family implements; family adapters differ only in small hooks."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

from engine.schedule import ShiftRule


@dataclass(frozen=True)
class Conditioning:
    """Encoded text for one job: family-specific tensors for the prompt and, with CFG, the negative."""

    positive: dict[str, Any]
    negative: dict[str, Any] | None = None
    cfg_scale: float = 1.0  # real classifier-free guidance (SD3, Qwen-Image, Z-Image); 1 = off
    guidance: float | None = None  # FLUX-dev's distilled guidance embedding; None where the model has none
    extra: dict[str, Any] = field(default_factory=dict)


class FlowBackend(ABC):
    """A loaded flow-matching model: encode, decode, velocity, text conditioning and its geometry.

    Latents cross this interface as unpacked float32 (B, C, h, w) tensors in the model's normalised
    space, and velocities follow diffusers' convention v ≈ eps - x0, whatever the family does inside.
    Backends hold no per-job state: one loaded backend serves every job.
    """

    family: ClassVar[str]
    patch_size: ClassVar[int] = 2
    default_cfg_scale: ClassVar[float] = 1.0
    default_guidance: ClassVar[float | None] = None

    def __init__(self, pipe: Any, *, source: str, device: torch.device, dtype: torch.dtype) -> None:
        self.pipe = pipe
        self.source = source
        self.device = device
        self.dtype = dtype
        self.vae_scale = int(pipe.vae_scale_factor)
        self.native_size = int(getattr(pipe, "default_sample_size", 128) or 128) * self.vae_scale
        self.shift_rule = ShiftRule.from_scheduler_config(dict(pipe.scheduler.config))

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
    def default_steps(self) -> int:
        """Length of the full schedule the model was tuned for; the upscale runs only its tail."""
        return 28

    @property
    def vae_width(self) -> int:
        """Channels of the VAE's full-resolution layers, for memory estimates."""
        channels = getattr(self.pipe.vae.config, "block_out_channels", None)
        if channels:
            return int(channels[0])
        return int(getattr(self.pipe.vae.config, "base_dim", 96))

    # -- pixels <-> latents -----------------------------------------------------------------------
    @torch.no_grad()
    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) in [-1, 1] -> normalised latent (B, C, H/f, W/f), float32; uses the posterior mean."""
        vae = self.pipe.vae
        raw = self._vae_encode(vae, pixels.to(self.device, self._vae_dtype))
        return self._normalise(raw.float())

    @torch.no_grad()
    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        """Normalised latent -> (B, 3, H, W) in [-1, 1], float32."""
        vae = self.pipe.vae
        raw = self._denormalise(latent.float()).to(self.device, self._vae_dtype)
        return self._vae_decode(vae, raw).float().clamp(-1.0, 1.0)

    @property
    def _vae_dtype(self) -> torch.dtype:
        return self.pipe.vae.dtype

    def _vae_encode(self, vae: Any, pixels: torch.Tensor) -> torch.Tensor:
        return vae.encode(pixels).latent_dist.mode()

    def _vae_decode(self, vae: Any, latent: torch.Tensor) -> torch.Tensor:
        return vae.decode(latent, return_dict=False)[0]

    def _normalise(self, raw: torch.Tensor) -> torch.Tensor:
        config = self.pipe.vae.config
        shift = getattr(config, "shift_factor", None) or 0.0
        return (raw - shift) * config.scaling_factor

    def _denormalise(self, latent: torch.Tensor) -> torch.Tensor:
        config = self.pipe.vae.config
        shift = getattr(config, "shift_factor", None) or 0.0
        return latent / config.scaling_factor + shift

    # -- text -------------------------------------------------------------------------------------
    @torch.no_grad()
    def encode_prompt(
        self,
        prompt: str = "",
        negative_prompt: str | None = None,
        *,
        cfg_scale: float | None = None,
        guidance: float | None = None,
    ) -> Conditioning:
        """Encode the prompt once per job; the negative branch exists only when CFG will use it."""
        cfg = self.default_cfg_scale if cfg_scale is None else float(cfg_scale)
        use_cfg = cfg > 1.0 and (bool(prompt) or bool(negative_prompt))
        positive = self._encode_text(prompt)
        negative = self._encode_text(negative_prompt or "") if use_cfg else None
        return Conditioning(
            positive=positive,
            negative=negative,
            cfg_scale=cfg if use_cfg else 1.0,
            guidance=self._guidance_value(guidance),
        )

    def _guidance_value(self, guidance: float | None) -> float | None:
        return None

    @abstractmethod
    def _encode_text(self, prompt: str) -> dict[str, Any]:
        """Family-specific text encoding into the keyword tensors its transformer takes."""

    # -- the model --------------------------------------------------------------------------------
    @torch.no_grad()
    def velocity(self, x: torch.Tensor, sigma: float, cond: Conditioning) -> torch.Tensor:
        """Flow velocity v(x_sigma, sigma) ≈ eps - x0 for unpacked latents, with CFG where asked for."""
        v = self._predict(x, sigma, cond.positive, cond)
        if cond.negative is not None and cond.cfg_scale > 1.0:
            v_neg = self._predict(x, sigma, cond.negative, cond)
            v = self._combine_cfg(v, v_neg, cond.cfg_scale)
        return v

    def _combine_cfg(self, v: torch.Tensor, v_neg: torch.Tensor, scale: float) -> torch.Tensor:
        return v_neg + scale * (v - v_neg)

    @abstractmethod
    def _predict(self, x: torch.Tensor, sigma: float, text: dict[str, Any], cond: Conditioning) -> torch.Tensor:
        """One transformer call: unpacked float32 latent in, float32 velocity (eps - x0) out."""
