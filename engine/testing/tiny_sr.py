"""Tiny random SR models in the published key layouts, saved as .pth and .safetensors (tests and benchmarks).

Each is built with spandrel's own architecture class (the code of the original repositories) at a few channels,
so its state dict has the keys and shapes a real checkpoint of that architecture has, and spandrel recognises
it the way it recognises a downloaded one. Random weights: the outputs mean nothing, the plumbing is real.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import torch

from engine.sr.spandrel_import import import_spandrel


def _esrgan(scale: int) -> torch.nn.Module:
    from spandrel.architectures.ESRGAN import ESRGAN as RRDBNet

    return RRDBNet(in_nc=3, out_nc=3, num_filters=8, num_blocks=1, scale=scale)


def _compact(scale: int) -> torch.nn.Module:
    from spandrel.architectures.Compact import Compact as SRVGGNetCompact

    return SRVGGNetCompact(num_in_ch=3, num_out_ch=3, num_feat=8, num_conv=2, upscale=scale)


def _swinir(scale: int) -> torch.nn.Module:
    from spandrel.architectures.SwinIR import SwinIR

    return SwinIR(img_size=32, embed_dim=12, depths=[1], num_heads=[2], window_size=8, mlp_ratio=2.0,
                  upscale=scale, upsampler="pixelshuffledirect", resi_connection="1conv")


def _span(scale: int) -> torch.nn.Module:
    from spandrel.architectures.SPAN import SPAN

    return SPAN(num_in_ch=3, num_out_ch=3, feature_channels=8, upscale=scale)


def _omnisr(scale: int) -> torch.nn.Module:
    from spandrel.architectures.OmniSR import OmniSR

    return OmniSR(num_in_ch=3, num_out_ch=3, num_feat=16, block_num=1, window_size=8, res_num=1, up_scale=scale)


def _dat(scale: int) -> torch.nn.Module:
    from spandrel.architectures.DAT import DAT

    return DAT(img_size=32, embed_dim=16, split_size=[2, 4], depth=[1], num_heads=[2], expansion_factor=2.0,
               upscale=scale, upsampler="pixelshuffle")


# name -> (builder, spandrel's architecture name)
ARCHITECTURES: dict[str, tuple[Callable[[int], torch.nn.Module], str]] = {
    "esrgan": (_esrgan, "ESRGAN"),
    "compact": (_compact, "RealESRGAN Compact"),
    "swinir": (_swinir, "SwinIR"),
    "span": (_span, "SPAN"),
    "omnisr": (_omnisr, "OmniSR"),
    "dat": (_dat, "DAT"),
}


def tiny_state_dict(arch: str, scale: int = 4, seed: int = 0) -> dict[str, torch.Tensor]:
    """A random state dict of `arch` at `scale`, in the original repository's key layout."""
    import_spandrel()  # the architecture modules import through spandrel's package
    build, _ = ARCHITECTURES[arch]
    for _ in range(300):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net = build(scale)
        state = {k: v.detach().clone().contiguous() for k, v in net.state_dict().items()}
        if not any(v.is_meta for v in state.values()):
            return state
        # A model loading in another thread (a test server's warm-up: diffusers under accelerate's
        # init_empty_weights) patches nn.Module.register_parameter process-wide for a moment, and a module built
        # meanwhile gets meta parameters. Build again once it is done: the seed gives the same values.
        time.sleep(0.1)
    raise RuntimeError(f"the tiny {arch} model kept getting meta tensors: something holds init_empty_weights")


def save_tiny_sr(folder: Path, arch: str, scale: int = 4, *, suffix: str = ".pth", seed: int = 0,
                 wrap: str | None = None) -> Path:
    """Write a tiny `arch` model to `folder/<arch>-x<scale><suffix>`; `wrap` nests the dict under that key
    (Real-ESRGAN's releases use "params_ema"), as published files do."""
    state = tiny_state_dict(arch, scale, seed)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{arch}-x{scale}{suffix}"
    if suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(state, str(path))
    else:
        torch.save({wrap: state} if wrap else state, path)
    return path
