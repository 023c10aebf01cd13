"""The built-in model's detailed mode: low-rank extra weights (LoRA) on the faithful network's convolutions,
trained adversarially (seed 004's adversarial LoRA fine-tune, here hinge + R1 with a tiny discriminator).

The extra weights live in the same safetensors file as the faithful ones, under `detail.`; `merged` folds
them into a plain copy of the network at a chosen scale (0 = faithful, 1 = as trained, more = stronger),
so either mode runs the same convolution-only network (what engine-side CPU speedups wrap).
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from engine.builtin.model import FlowSRNet

PREFIX = "detail."
RANK = 8
RESIDUAL_GAIN = 10.0


def adapted_convs(net: FlowSRNet) -> dict[str, nn.Conv2d]:
    """The convolutions that get a low-rank update: both of every residual block's, and the tail."""
    convs = {f"blocks.{i}.conv{j}": getattr(block, f"conv{j}") for i, block in enumerate(net.blocks) for j in (1, 2)}
    convs["tail"] = net.tail
    return convs


class LoraConv(nn.Module):
    """conv(x) + scale * up(down(x)): down a 3x3 conv to `rank` channels, up a 1x1 conv back (starts at 0)."""

    def __init__(self, conv: nn.Conv2d, rank: int = RANK) -> None:
        super().__init__()
        self.conv = conv
        self.down = nn.Conv2d(conv.in_channels, rank, conv.kernel_size, padding=conv.padding, bias=False)
        self.up = nn.Conv2d(rank, conv.out_channels, 1, bias=False)
        fan_in = conv.in_channels * conv.kernel_size[0] * conv.kernel_size[1]
        nn.init.normal_(self.down.weight, std=fan_in**-0.5)
        nn.init.zeros_(self.up.weight)
        self.scale = 1.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x) + self.scale * self.up(self.down(x))


def with_lora(net: FlowSRNet, rank: int = RANK) -> tuple[FlowSRNet, list[nn.Parameter]]:
    """A copy of `net` with LoRA on its adapted convolutions (base frozen) and the list of trainable weights."""
    adapted = copy.deepcopy(net)
    for p in adapted.parameters():
        p.requires_grad_(False)
    trainable = []
    for name, conv in adapted_convs(adapted).items():
        lora = LoraConv(conv, rank)
        trainable += [lora.down.weight, lora.up.weight]
        parent, _, attr = name.rpartition(".")
        setattr(adapted.get_submodule(parent) if parent else adapted, attr, lora)
    return adapted, trainable


def lora_state(adapted: FlowSRNet) -> dict[str, torch.Tensor]:
    """The extra weights of a LoRA-adapted network, named for the shipped file (`detail.<conv>.down/up`)."""
    state = {}
    for name, module in adapted.named_modules():
        if isinstance(module, LoraConv):
            state[f"{PREFIX}{name}.down"] = module.down.weight.detach().clone()
            state[f"{PREFIX}{name}.up"] = module.up.weight.detach().clone()
    return state


def merged(net: FlowSRNet, extra: dict[str, torch.Tensor], scale: float) -> FlowSRNet:
    """A plain copy of `net` whose adapted convolutions carry scale * up @ down folded into their weights."""
    out = copy.deepcopy(net)
    with torch.no_grad():
        for name, conv in adapted_convs(out).items():
            down, up = extra[f"{PREFIX}{name}.down"], extra[f"{PREFIX}{name}.up"]
            # (out, rank) @ (rank, in * kh * kw): a 1x1 after a 3x3 conv is one 3x3 conv.
            delta = up.flatten(1).to(conv.weight) @ down.flatten(1).to(conv.weight)
            conv.weight += scale * delta.view_as(conv.weight)
    return out


class Discriminator(nn.Module):
    """A tiny patch discriminator on (image, its Lanczos condition): logits per 4x4 block of pixels."""

    def __init__(self, width: int = 32) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv2d(6, width, 3, padding=1), nn.LeakyReLU(0.2),
            nn.Conv2d(width, 2 * width, 4, stride=2, padding=1), nn.LeakyReLU(0.2),
            nn.Conv2d(2 * width, 2 * width, 4, stride=2, padding=1), nn.LeakyReLU(0.2),
            nn.Conv2d(2 * width, 2 * width, 3, padding=1), nn.LeakyReLU(0.2),
            nn.Conv2d(2 * width, 1, 3, padding=1),
        )

    def forward(self, image: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
        # The detail the discriminator judges is the residual over the condition (the rest is the same in both),
        # scaled up: its spread is about 0.03, and a first run fed as is never left D = 0 (hinge stuck at 2.0).
        return self.layers(torch.cat([RESIDUAL_GAIN * (image - up), up], dim=1))


def hinge_d_loss(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    return F.relu(1.0 - real).mean() + F.relu(1.0 + fake).mean()


def r1_penalty(discriminator: Discriminator, real: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    """Mean squared gradient norm of D at real images (Mescheder et al. 2018): keeps D smooth there."""
    real = real.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(discriminator(real, up).sum(), real, create_graph=True)
    return grad.pow(2).flatten(1).sum(1).mean()
