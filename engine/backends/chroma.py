"""Chroma: FLUX.1-schnell's architecture without CLIP or guidance input, T5 tokens masked to the prompt (and its
first padding token), real CFG."""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from engine.backends.base import Conditioning
from engine.backends.diffusers_base import DiffusersBackend
from engine.backends.flux import image_ids
from engine.backends.packing import pack_latents, unpack_latents


class ChromaBackend(DiffusersBackend):
    """ChromaTransformer2DModel driven as ChromaPipeline does: packed 2x2 tokens, t = sigma, an attention mask."""

    family: ClassVar[str] = "chroma"
    default_cfg_scale: ClassVar[float] = 5.0  # the pipeline's guidance_scale default; runs only with a prompt

    def _encode_text(self, prompt: str) -> dict[str, Any]:
        """T5 states of the prompt (encoded with its mask) and the mask the transformer keeps text tokens by."""
        embeds, mask = self.pipe._get_t5_prompt_embeds(prompt=[prompt], num_images_per_prompt=1,
                                                       max_sequence_length=512, device=self._text_device)
        return {"encoder_hidden_states": embeds, "text_mask": mask}

    def _predict(self, x: torch.Tensor, sigma: float, text: dict[str, Any], cond: Conditioning) -> torch.Tensor:
        transformer = self.pipe.transformer
        b, _, h, w = x.shape
        dtype = transformer.dtype
        embeds = text["encoder_hidden_states"].expand(b, -1, -1)
        # The prompt's mask, then every image token (as ChromaPipeline._prepare_attention_mask).
        image_tokens = torch.ones(b, (h // 2) * (w // 2), device=self.device, dtype=torch.bool)
        mask = torch.cat([text["text_mask"].expand(b, -1), image_tokens], dim=1)
        out = transformer(
            hidden_states=pack_latents(x).to(self.device, dtype),
            timestep=self._scaled_timestep(b, sigma),
            encoder_hidden_states=embeds,
            txt_ids=torch.zeros(embeds.shape[1], 3, device=self.device, dtype=embeds.dtype),
            img_ids=image_ids(h, w, self.device, dtype),
            attention_mask=mask,
            return_dict=False,
        )[0]
        return unpack_latents(out.float(), h, w)
