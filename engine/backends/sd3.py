"""SD3 / SD3.5: unpacked latents (patching happens inside), timestep = sigma·1000, real CFG."""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from engine.backends.base import Conditioning
from engine.backends.diffusers_base import DiffusersBackend
from engine.errors import InvalidInput


class SD3Backend(DiffusersBackend):
    """SD3Transformer2DModel driven as StableDiffusion3Pipeline does: latents as they are, t = 1000·sigma."""

    family: ClassVar[str] = "sd3"
    # SD3.5 recommends 3.5-4.5; the base class runs CFG only when there is a prompt or negative to guide by.
    default_cfg_scale: ClassVar[float] = 4.5

    def _encode_text(self, prompt: str) -> dict[str, Any]:
        """CLIP-L + CLIP-G + T5 through the pipeline's encode_prompt; the negative is encoded on its own."""
        embeds, _, pooled, _ = self.pipe.encode_prompt(
            prompt=prompt, prompt_2=None, prompt_3=None, device=self._text_device, do_classifier_free_guidance=False
        )
        return {"encoder_hidden_states": embeds, "pooled_projections": pooled}

    def _check_size(self, latent_h: int, latent_w: int) -> None:
        """Refuse a pass larger than the learned position table, which SD3 would reject with a ValueError."""
        limit = self.pipe.transformer.config.pos_embed_max_size
        if limit and max(latent_h, latent_w) // self.patch_size > limit:
            most = limit * self.patch_size * self.vae_scale
            raise InvalidInput(
                f"SD3 takes at most {most}x{most} pixels in one pass; this stage needs "
                f"{latent_w * self.vae_scale}x{latent_h * self.vae_scale}. Use a smaller scale or region"
            )

    def _predict(
        self, x: torch.Tensor, sigma: float, text: dict[str, Any], cond: Conditioning
    ) -> torch.Tensor:
        """One call as in the pipeline's loop; the model already predicts eps - x0."""
        transformer = self.pipe.transformer
        b, _, h, w = x.shape
        self._check_size(h, w)
        # The pipeline passes the scheduler's float32 timesteps uncast: a bfloat16 t would be off by up to 2.
        timestep = torch.full((b,), sigma * 1000.0, device=self.device, dtype=torch.float32)
        out = transformer(
            hidden_states=x.to(self.device, transformer.dtype),
            timestep=timestep,
            encoder_hidden_states=text["encoder_hidden_states"].expand(b, -1, -1),
            pooled_projections=text["pooled_projections"].expand(b, -1),
            return_dict=False,
        )[0]
        return out.float()
