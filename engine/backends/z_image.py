"""Z-Image: per-sample list input of (C, 1, h, w), timestep = 1 - sigma, output negated to eps - x0."""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from engine.backends.base import Conditioning
from engine.backends.diffusers_base import DiffusersBackend


class ZImageBackend(DiffusersBackend):
    """ZImageTransformer2DModel driven as ZImagePipeline does; its `guidance_scale` g is our cfg_scale - 1.

    The pipeline's CFG is pos + g·(pos - neg), which is the base class's neg + s·(pos - neg) with s = g + 1.
    """

    family: ClassVar[str] = "z-image"
    default_cfg_scale: ClassVar[float] = 1.0  # Z-Image-Turbo is distilled to run without CFG

    @property
    def default_steps(self) -> int:
        return 9  # Z-Image-Turbo's recommended schedule

    def _encode_text(self, prompt: str) -> dict[str, Any]:
        """Qwen3 hidden states of the chat-templated prompt, padding dropped: one (L, D) tensor per prompt."""
        embeds, _ = self.pipe.encode_prompt(
            prompt=prompt, device=self._text_device, do_classifier_free_guidance=False
        )
        return {"cap_feats": embeds[0]}

    def _predict(
        self, x: torch.Tensor, sigma: float, text: dict[str, Any], cond: Conditioning
    ) -> torch.Tensor:
        """One call as in the pipeline's loop: a list of (C, 1, h, w) frames, t = (1000 - 1000·sigma)/1000."""
        transformer = self.pipe.transformer
        b = x.shape[0]
        frames = list(x.to(self.device, transformer.dtype).unsqueeze(2).unbind(dim=0))
        # Float32 like the pipeline's timestep: in bfloat16, 1 - sigma would lose most of its precision.
        timestep = torch.full((b,), 1.0 - sigma, device=self.device, dtype=torch.float32)
        out = transformer(frames, timestep, [text["cap_feats"]] * b, return_dict=False)[0]
        # Z-Image predicts x0 - eps (it runs time from noise at 0 to image at 1); ours is eps - x0.
        return -torch.stack([o.float() for o in out], dim=0).squeeze(2)
