"""Backends built on a diffusers pipeline: its VAE, text encoders and transformer, driven step by step."""

from __future__ import annotations

from abc import abstractmethod
from typing import Any, ClassVar

import torch

from engine.backends.base import Conditioning, FlowBackend
from engine.backends.text_encoders import TextEncoders
from engine.prompt_cache import PromptCache, entry_key
from engine.schedule import ShiftRule


class DiffusersBackend(FlowBackend):
    """A diffusers pipeline's components driven directly; family adapters fill in text and the model call."""

    default_cfg_scale: ClassVar[float] = 1.0
    default_guidance: ClassVar[float | None] = None

    def __init__(self, pipe: Any, *, source: str, device: torch.device, dtype: torch.dtype) -> None:
        vae_scale = int(pipe.vae_scale_factor)
        super().__init__(
            source=source, device=device, dtype=dtype, vae_scale=vae_scale,
            native_size=int(getattr(pipe, "default_sample_size", 128) or 128) * vae_scale,
            shift_rule=ShiftRule.from_scheduler_config(dict(pipe.scheduler.config)),
        )
        self.pipe = pipe
        # Text encoders load only for prompts the cache lacks (None: the pipeline came with them, from memory).
        self.text_encoders = TextEncoders.for_pipe(pipe, device, dtype)
        self.prompt_cache = PromptCache()

    @property
    def vae_module(self) -> torch.nn.Module:
        return self.pipe.vae

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
        texts = self._encoded_texts([prompt, negative_prompt or ""] if use_cfg else [prompt])
        positive = texts[0]
        negative = texts[1] if use_cfg else None
        return Conditioning(
            positive=positive,
            negative=negative,
            cfg_scale=cfg if use_cfg else 1.0,
            distilled_guidance=self._guidance_value(guidance),
        )

    def _guidance_value(self, guidance: float | None) -> float | None:
        return None

    def _encoded_texts(self, prompts: list[str]) -> list[dict[str, Any]]:
        """Each prompt's encoding from the prompt cache; the text encoders load only for the ones it lacks, and
        are freed again before the transformer runs."""
        if self.text_encoders is None:
            return [self._encode_text(prompt) for prompt in prompts]
        device = self.device
        identity = self.text_encoders.identity
        keys = [entry_key(family=self.family, options=self._text_options(), encoder_identity=identity,
                          dtype=self.dtype, device_type=self._text_device.type, prompt=prompt) for prompt in prompts]
        found = [self.prompt_cache.get(key, self.device) for key in keys]
        missing = [i for i, entry in enumerate(found) if entry is None]
        if missing:
            with self.text_encoders.loaded():
                for i in missing:
                    encoded = self._encode_text(prompts[i])
                    self.prompt_cache.put(keys[i], encoded)
                    # Encoders the memory plan put on the CPU hand their tensors over to the model's device.
                    found[i] = {k: None if v is None else v.to(device) for k, v in encoded.items()}
        return found  # type: ignore[return-value]  # every None was filled above

    @property
    def _text_device(self) -> torch.device:
        """Where the text encoders run: the model's device unless the memory plan put them on the CPU."""
        return self.device if self.text_encoders is None else self.text_encoders.device

    def _text_options(self) -> str:
        """What besides the encoder files and the prompt changes this family's encoding (e.g. a token count)."""
        return ""

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

    def _scaled_timestep(self, batch: int, sigma: float) -> torch.Tensor:
        """sigma as FLUX and Qwen-Image pipelines hand it over: t = 1000·sigma in the model dtype, then / 1000.

        Rounding t before dividing is what the stock pipelines do; in bfloat16 it differs from rounding
        sigma itself by a step for about a quarter of all sigmas, so we do it their way.
        """
        dtype = self.pipe.transformer.dtype
        return torch.full((batch,), sigma * 1000.0, device=self.device, dtype=dtype) / 1000

    def _combine_cfg(self, v: torch.Tensor, v_neg: torch.Tensor, scale: float) -> torch.Tensor:
        return v_neg + scale * (v - v_neg)

    @abstractmethod
    def _predict(self, x: torch.Tensor, sigma: float, text: dict[str, Any], cond: Conditioning) -> torch.Tensor:
        """One transformer call: unpacked float32 latent in, float32 velocity (eps - x0) out."""
