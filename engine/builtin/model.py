"""The built-in model's network: a compact conditional flow-matching super-resolver in pixel space.

It sees the noisy sample x_sigma, the stage's conventionally upsampled input and sigma, and predicts
the clean image as a residual over that upsampled input; the backend turns this into a velocity.
v2 also takes the step size d of a flow map (seed 004's Shortcut formulation): x0_hat(x, sigma, d) is
the clean image implied by a jump from sigma to sigma - d, so a 1-, 2- or 4-step schedule each asks
for its own jump. d enters as a second embedding added to sigma's; its last layer starts at zero, so
a v1 network extends to v2 unchanged and fine-tunes from there.
With `grid_input` it also sees where the input's JPEG block grid lies (`block_grid`: the position inside
the block, found from the image); the head's weights for those features start at zero, so a network
without them extends unchanged too.
Predicting x0 rather than v keeps training well-conditioned at every sigma and makes an untrained
network equal to Lanczos, so training can only add detail (the seed note's "upsample -> refine" pairs,
with flow matching as in FlowMapSR).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from engine.builtin import block_grid


@dataclass(frozen=True)
class NetConfig:
    """Sizes of the network; saved beside the weights as config.json."""

    width: int = 48
    blocks: int = 8
    unshuffle: int = 2  # work at half resolution on 2x2 pixel patches: 4x cheaper, same receptive field in px
    embed: int = 64  # sigma embedding size
    step_input: bool = False  # v2: a flow map that also takes the step size (v1 folders leave it out)
    grid_input: bool = False  # v2: the JPEG block position features of `block_grid` (older folders leave it out)

    def to_dict(self) -> dict[str, int | bool]:
        return asdict(self)


def sigma_embedding(sigma: torch.Tensor, size: int) -> torch.Tensor:
    """Sinusoidal features of sigma in [0, 1] (as transformer timestep embeddings, scaled by 1000)."""
    half = size // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32, device=sigma.device) / half)
    angles = sigma.float()[:, None] * 1000.0 * freqs[None]
    return torch.cat([angles.sin(), angles.cos()], dim=1)


class ResBlock(nn.Module):
    """Two 3x3 convolutions with a sigma-dependent scale and shift (FiLM) between them."""

    def __init__(self, width: int, embed: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(width, width, 3, padding=1)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1)
        self.film = nn.Linear(embed, 2 * width)
        nn.init.zeros_(self.conv2.weight)  # each block starts as identity: stable from the first step
        nn.init.zeros_(self.conv2.bias)

    def forward(self, h: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        scale, shift = self.film(emb)[:, :, None, None].chunk(2, dim=1)
        y = F.silu(self.conv1(h))
        y = y * (1 + scale) + shift
        return h + self.conv2(F.silu(y))


class FlowSRNet(nn.Module):
    """x0_hat = up + net(x_sigma, up, sigma), all images (B, 3, H, W) in [-1, 1], H and W even."""

    def __init__(self, config: NetConfig = NetConfig()) -> None:
        super().__init__()
        self.config = config
        r = config.unshuffle
        self.embed = nn.Sequential(nn.Linear(config.embed, config.embed), nn.SiLU(), nn.Linear(config.embed,
                                                                                               config.embed))
        self.step_embed = None
        if config.step_input:
            self.step_embed = nn.Sequential(nn.Linear(config.embed, config.embed), nn.SiLU(),
                                            nn.Linear(config.embed, config.embed))
            nn.init.zeros_(self.step_embed[2].weight)  # starts ignoring d: fine-tunes from a v1 network
            nn.init.zeros_(self.step_embed[2].bias)
        self.head = nn.Conv2d(6 * r * r + (block_grid.FEATURES if config.grid_input else 0), config.width, 3, padding=1)
        self.blocks = nn.ModuleList(ResBlock(config.width, config.embed) for _ in range(config.blocks))
        self.tail = nn.Conv2d(config.width, 3 * r * r, 3, padding=1)
        nn.init.zeros_(self.tail.weight)  # untrained, the model returns its input: Lanczos
        nn.init.zeros_(self.tail.bias)

    def forward(self, x: torch.Tensor, up: torch.Tensor, sigma: torch.Tensor,
                step: torch.Tensor | None = None, grid: torch.Tensor | None = None) -> torch.Tensor:
        """`step` (B,) is the flow map's jump d in [0, sigma]; None means one jump to the end (d = sigma).
        `grid` is `block_grid.positions` cut to these images, None where the input shows no block grid."""
        emb = self.embed(sigma_embedding(sigma, self.config.embed))
        if self.step_embed is not None:
            emb = emb + self.step_embed(sigma_embedding(sigma if step is None else step, self.config.embed))
        # x_sigma carries (1 - sigma) of the image and sigma of noise; scaling it so makes the one-step
        # start (sigma = 1) see no noise at all, so its output is a deterministic function of the input.
        # A first run without this added noise-dependent grain (PSNR 52-56 dB between seeds).
        x = x * (1.0 - sigma.to(x.dtype))[:, None, None, None]
        h = F.pixel_unshuffle(torch.cat([x, up], dim=1), self.config.unshuffle)
        if self.config.grid_input:
            h = torch.cat([h, block_grid.features(grid, up, self.config.unshuffle).to(h.dtype)], dim=1)
        h = self.head(h)
        for block in self.blocks:
            h = block(h, emb)
        return up + F.pixel_shuffle(self.tail(F.silu(h)), self.config.unshuffle)
