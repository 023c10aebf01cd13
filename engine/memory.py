"""Rough memory arithmetic, so a job that cannot fit is refused before it starts, not killed halfway."""

from __future__ import annotations

import os

import torch

# Our own float32 buffers per output pixel: input-upsampled, padded model tensor, decoded, result.
_ENGINE_BYTES_PER_PIXEL = 4 * 3 * 4
# The VAE decoder keeps a few full-resolution activations of its widest top-level width alive at once.
_VAE_LIVE_ACTIVATIONS = 4


def estimate_peak_bytes(output_pixels: int, vae_width: int, dtype: torch.dtype, tile_pixels: int | None = None) -> int:
    """Peak working memory of the last stage: the VAE decoder's activations over one tile (or the whole
    output, untiled) plus the engine's own full-size buffers."""
    element = torch.finfo(dtype).bits // 8
    model_pixels = output_pixels if tile_pixels is None else min(output_pixels, tile_pixels)
    return model_pixels * vae_width * element * _VAE_LIVE_ACTIVATIONS + output_pixels * _ENGINE_BYTES_PER_PIXEL


def available_bytes(device: torch.device) -> int | None:
    """Free memory on the device now, or None where it cannot be known."""
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free)
    if device.type == "cpu":
        try:
            with open("/proc/meminfo") as f:
                for line in f:
                    if line.startswith("MemAvailable:"):
                        return int(line.split()[1]) * 1024
        except OSError:
            pass
        try:
            return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            return None
    return None


def format_bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"
