"""FLUX.2 (Klein 4B/9B, dev): 2x2-patchified latents normalised by the VAE's batch-norm statistics, 4-D position
ids (t, h, w, l), a Qwen3 (Klein) or Mistral 3 (dev) text encoder, and dev's distilled guidance embedding."""

from __future__ import annotations

from dataclasses import replace
from typing import Any, ClassVar

import torch

from engine.backends.base import Conditioning
from engine.backends.diffusers_base import DiffusersBackend
from engine.backends.packing import pack_latents, unpack_latents


def patchify(x: torch.Tensor) -> torch.Tensor:
    """(B, C, h, w) -> (B, 4C, h/2, w/2), channel c·4 + 2·dy + dx, as Flux2Pipeline._patchify_latents."""
    b, c, h, w = x.shape
    return x.view(b, c, h // 2, 2, w // 2, 2).permute(0, 1, 3, 5, 2, 4).reshape(b, c * 4, h // 2, w // 2)


def unpatchify(x: torch.Tensor) -> torch.Tensor:
    """Inverse of `patchify`."""
    b, c4, h, w = x.shape
    return x.view(b, c4 // 4, 2, 2, h, w).permute(0, 1, 4, 2, 5, 3).reshape(b, c4 // 4, h * 2, w * 2)


def latent_ids(h: int, w: int, device: torch.device) -> torch.Tensor:
    """Position ids (t=0, row, col, l=0) per token of an (h, w) latent, as Flux2Pipeline._prepare_latent_ids."""
    ids = torch.cartesian_prod(torch.arange(1), torch.arange(h // 2), torch.arange(w // 2), torch.arange(1))
    return ids.unsqueeze(0).to(device)


class Flux2Backend(DiffusersBackend):
    """Flux2Transformer2DModel driven as Flux2KleinPipeline / Flux2Pipeline do.

    Our latents are the VAE's 32-channel (B, C, H/8, W/8) maps normalised the pipeline's way (patchify, subtract
    the batch-norm running mean, divide by its std, unpatchify), so tiles, masks and the 2x2 token packing work as
    for FLUX.1; the transformer's tokens are `pack_latents` of them, the same order as the pipeline's
    patchify-then-flatten.
    """

    family: ClassVar[str] = "flux2"
    default_guidance: ClassVar[float | None] = 4.0  # Flux2Pipeline's guidance_scale default (dev only)

    def __init__(self, pipe: Any, *, source: str, device: torch.device, dtype: torch.dtype) -> None:
        super().__init__(pipe, source=source, device=device, dtype=dtype)
        # The pipelines pass mu from `compute_empirical_mu`, not the scheduler config's linear rule.
        self.shift_rule = replace(self.shift_rule, dynamic=True, empirical_mu=True)
        # Read once while the weights are real: sequential offload later leaves the VAE's buffers on `meta`.
        vae = pipe.vae
        self._bn_mean = vae.bn.running_mean.detach().clone().view(1, -1, 1, 1)
        self._bn_std = torch.sqrt(vae.bn.running_var.detach().clone() + vae.config.batch_norm_eps).view(1, -1, 1, 1)

    @property
    def has_guidance_embedding(self) -> bool:
        return bool(self.pipe.transformer.config.guidance_embeds)

    @property
    def is_distilled(self) -> bool:
        """Klein 4B/9B are step-distilled (4 steps); Klein base and dev run the full schedule."""
        return bool(getattr(self.pipe.config, "is_distilled", False))

    @property
    def default_steps(self) -> int:
        return 4 if self.is_distilled else 50  # the pipelines' and model cards' defaults

    def _guidance_value(self, guidance: float | None) -> float | None:
        if not self.has_guidance_embedding:
            return None  # Klein has no guidance input
        return self.default_guidance if guidance is None else float(guidance)

    # -- normalisation: per patchified channel, from the VAE's batch-norm running statistics ----------
    def _bn_stats(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self._bn_mean.to(like.device, like.dtype), self._bn_std.to(like.device, like.dtype)

    def _normalise(self, raw: torch.Tensor) -> torch.Tensor:
        patches = patchify(raw)
        mean, std = self._bn_stats(patches)
        return unpatchify((patches - mean) / std)

    def _denormalise(self, latent: torch.Tensor) -> torch.Tensor:
        patches = patchify(latent)
        mean, std = self._bn_stats(patches)
        return unpatchify(patches * std + mean)

    # -- text and the model ---------------------------------------------------------------------------
    def _encode_text(self, prompt: str) -> dict[str, Any]:
        """Stacked intermediate hidden states of the chat-templated prompt (512 tokens) and their text ids."""
        embeds, text_ids = self.pipe.encode_prompt(prompt=prompt, device=self._text_device)
        return {"encoder_hidden_states": embeds, "txt_ids": text_ids}

    def _predict(self, x: torch.Tensor, sigma: float, text: dict[str, Any], cond: Conditioning) -> torch.Tensor:
        transformer = self.pipe.transformer
        b, _, h, w = x.shape
        dtype = transformer.dtype
        guidance = None
        if cond.distilled_guidance is not None:
            guidance = torch.full((b,), cond.distilled_guidance, device=self.device, dtype=torch.float32)
        out = transformer(
            hidden_states=pack_latents(x).to(self.device, dtype),
            timestep=self._scaled_timestep(b, sigma),
            guidance=guidance,
            encoder_hidden_states=text["encoder_hidden_states"].expand(b, -1, -1),
            txt_ids=text["txt_ids"].expand(b, -1, -1),
            img_ids=latent_ids(h, w, self.device).expand(b, -1, -1),
            return_dict=False,
        )[0]
        return unpack_latents(out.float(), h, w)
