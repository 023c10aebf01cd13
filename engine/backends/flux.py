"""FLUX.1 (dev and schnell): packed 2x2 latents, position ids, sigma as timestep, distilled guidance."""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from engine.backends.base import Conditioning
from engine.backends.diffusers_base import DiffusersBackend
from engine.backends.packing import pack_latents, unpack_latents


def image_ids(h: int, w: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Rotary position ids [0, row, col] per packed token; tile-local when the caller passes a tile."""
    rows = torch.arange(h // 2, dtype=dtype).view(-1, 1).expand(h // 2, w // 2)
    cols = torch.arange(w // 2, dtype=dtype).view(1, -1).expand(h // 2, w // 2)
    ids = torch.stack([torch.zeros_like(rows), rows, cols], dim=-1).reshape(-1, 3)
    return ids.to(device)


class FluxBackend(DiffusersBackend):
    family: ClassVar[str] = "flux"
    default_guidance: ClassVar[float | None] = 3.5  # FLUX.1-dev's recommended distilled guidance

    @property
    def has_guidance_embedding(self) -> bool:
        return bool(self.pipe.transformer.config.guidance_embeds)

    @property
    def default_steps(self) -> int:
        return 28 if self.has_guidance_embedding else 4  # schnell is distilled to 4 steps

    def _guidance_value(self, guidance: float | None) -> float | None:
        if not self.has_guidance_embedding:
            return None  # schnell has no guidance input
        return self.default_guidance if guidance is None else float(guidance)

    def _encode_text(self, prompt: str) -> dict[str, Any]:
        embeds, pooled, text_ids = self.pipe.encode_prompt(
            prompt=prompt, prompt_2=None, device=self._text_device, max_sequence_length=self._max_text_tokens()
        )
        return {"encoder_hidden_states": embeds, "pooled_projections": pooled, "txt_ids": text_ids}

    def _text_options(self) -> str:
        return f"t5_tokens={self._max_text_tokens()}"

    def _max_text_tokens(self) -> int:
        # schnell was trained with 256 T5 tokens, dev with 512 (as diffusers' pipeline documents).
        return 512 if self.has_guidance_embedding else 256

    def _predict(self, x: torch.Tensor, sigma: float, text: dict[str, Any], cond: Conditioning) -> torch.Tensor:
        transformer = self.pipe.transformer
        b, _, h, w = x.shape
        dtype = transformer.dtype
        timestep = self._scaled_timestep(b, sigma)  # FLUX multiplies by 1000 again inside
        guidance = None
        if cond.distilled_guidance is not None:
            guidance = torch.full((b,), cond.distilled_guidance, device=self.device, dtype=torch.float32)
        out = transformer(
            hidden_states=pack_latents(x).to(self.device, dtype),
            timestep=timestep,
            guidance=guidance,
            pooled_projections=text["pooled_projections"].expand(b, -1),
            encoder_hidden_states=text["encoder_hidden_states"].expand(b, -1, -1),
            txt_ids=text["txt_ids"],
            img_ids=image_ids(h, w, self.device, dtype),
            return_dict=False,
        )[0]
        return unpack_latents(out.float(), h, w)
