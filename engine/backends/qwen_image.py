"""Qwen-Image: 3-D VAE latents normalised per channel, packed 2x2 tokens, true CFG with norm rescale."""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from engine.backends.base import Conditioning
from engine.backends.diffusers_base import DiffusersBackend
from engine.backends.packing import pack_latents, unpack_latents


class QwenImageBackend(DiffusersBackend):
    """QwenImageTransformer2DModel driven as QwenImagePipeline does: packed tokens, img_shapes, t = sigma."""

    family: ClassVar[str] = "qwen-image"
    default_cfg_scale: ClassVar[float] = 4.0  # the pipeline's true_cfg_scale default; runs only with a prompt

    @property
    def default_steps(self) -> int:
        return 50

    def _channel_stats(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-channel latents_mean / latents_std from the VAE config, shaped (1, C, 1, 1)."""
        config = self.pipe.vae.config
        shape = (1, config.z_dim, 1, 1)
        mean = torch.tensor(config.latents_mean, dtype=like.dtype, device=like.device).view(shape)
        std = torch.tensor(config.latents_std, dtype=like.dtype, device=like.device).view(shape)
        return mean, std

    # The VAE is a video VAE: images are one-frame clips, (B, C, 1, H, W).
    def _vae_encode(self, vae: Any, pixels: torch.Tensor) -> torch.Tensor:
        return vae.encode(pixels.unsqueeze(2)).latent_dist.mode()[:, :, 0]

    def _vae_decode(self, vae: Any, latent: torch.Tensor) -> torch.Tensor:
        return vae.decode(latent.unsqueeze(2), return_dict=False)[0][:, :, 0]

    def _normalise(self, raw: torch.Tensor) -> torch.Tensor:
        """(z - mean) / std per channel, as the Qwen-Image img2img pipeline normalises encoded images."""
        mean, std = self._channel_stats(raw)
        return (raw - mean) / std

    def _denormalise(self, latent: torch.Tensor) -> torch.Tensor:
        """z · std + mean per channel, as the pipeline does before vae.decode."""
        mean, std = self._channel_stats(latent)
        return latent * std + mean

    def _encode_text(self, prompt: str) -> dict[str, Any]:
        """Qwen2.5-VL hidden states of the templated prompt; the mask is None when nothing is padded."""
        embeds, mask = self.pipe.encode_prompt(prompt=prompt, device=self._text_device)
        return {"encoder_hidden_states": embeds, "encoder_hidden_states_mask": mask}

    def _predict(
        self, x: torch.Tensor, sigma: float, text: dict[str, Any], cond: Conditioning
    ) -> torch.Tensor:
        """One call as in the pipeline's loop; the model already predicts eps - x0."""
        transformer = self.pipe.transformer
        b, _, h, w = x.shape
        dtype = transformer.dtype
        mask = text["encoder_hidden_states_mask"]
        timestep = self._scaled_timestep(b, sigma)
        out = transformer(
            hidden_states=pack_latents(x).to(self.device, dtype),
            timestep=timestep,
            encoder_hidden_states=text["encoder_hidden_states"].expand(b, -1, -1),
            encoder_hidden_states_mask=None if mask is None else mask.expand(b, -1),
            img_shapes=[[(1, h // 2, w // 2)]] * b,
            return_dict=False,
        )[0]
        return unpack_latents(out.float(), h, w)

    def _combine_cfg(self, v: torch.Tensor, v_neg: torch.Tensor, scale: float) -> torch.Tensor:
        """Qwen-Image's true CFG: combine, then rescale each packed token to the conditional one's norm."""
        h, w = v.shape[-2:]
        # The pipeline takes the norm over a packed token's 4C values (C channels x its 2x2 patch).
        pos, neg = pack_latents(v), pack_latents(v_neg)
        combined = neg + scale * (pos - neg)
        combined = combined * (pos.norm(dim=-1, keepdim=True) / combined.norm(dim=-1, keepdim=True))
        return unpack_latents(combined, h, w)
