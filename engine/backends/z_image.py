"""Z-Image: per-sample list input of (C, 1, h, w), timestep = 1 - sigma, output negated to eps - x0."""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from engine.backends.base import Conditioning
from engine.backends.diffusers_base import DiffusersBackend


class ZImageBackend(DiffusersBackend):
    """Our cfg_scale is the standard one; Z-Image's own `guidance_scale` g is cfg_scale - 1 (pos + g(pos - neg))."""

    family: ClassVar[str] = "z-image"
    default_cfg_scale: ClassVar[float] = 1.0  # Z-Image-Turbo is distilled to run without CFG

    @property
    def default_steps(self) -> int:
        return 9  # Z-Image-Turbo's recommended schedule

    def _encode_text(self, prompt: str) -> dict[str, Any]:
        embeds, _ = self.pipe.encode_prompt(prompt=prompt, device=self.device, do_classifier_free_guidance=False)
        return {"cap_feats": embeds[0]}

    def _predict(self, x: torch.Tensor, sigma: float, text: dict[str, Any], cond: Conditioning) -> torch.Tensor:
        transformer = self.pipe.transformer
        b = x.shape[0]
        frames = list(x.to(self.device, transformer.dtype).unsqueeze(2).unbind(dim=0))
        out = transformer(
            frames,
            torch.full((b,), 1.0 - sigma, device=self.device, dtype=transformer.dtype),
            [text["cap_feats"]] * b,
            return_dict=False,
        )[0]
        # Z-Image predicts x0 - eps; our convention is eps - x0.
        return -torch.stack([o.float() for o in out], dim=0).squeeze(2)
