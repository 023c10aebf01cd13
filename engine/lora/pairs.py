"""Training pairs for an upscaling LoRA, as seed 000 ("Using LoRA for Lightweight Refinement") describes them:
high-res photo -> degrade and downscale -> upsample back to the stage size, which the flow model is to restore.

The degradation is the built-in model's (engine.builtin.data.degrade: blur, resize kernels, noise, JPEG, and a
share of clean bicubic downscales), so both models learn from the same low-res inputs; the upsample is the one
every stage of the upscale makes (Lanczos), so the LoRA sees exactly what the pipeline hands the model.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from engine.errors import InvalidInput

PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff")


@dataclass(frozen=True)
class Pair:
    """One training example: the high-res crop and its degraded, downscaled and Lanczos-upsampled copy, both
    (H, W, 3) float32 in [0, 1] of the same size."""

    hr: np.ndarray
    upsampled: np.ndarray


def list_photos(folder: Path, at_least: int = 2) -> list[Path]:
    """The photos directly in `folder` (sorted: the same split every run); refuses a folder with too few."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise InvalidInput(f"--photos {folder} is not a folder of photos")
    photos = sorted(p for p in folder.iterdir() if p.suffix.lower() in PHOTO_SUFFIXES and p.is_file())
    if len(photos) < at_least:
        raise InvalidInput(f"{folder} holds {len(photos)} photo(s); train-lora needs at least {at_least}"
                           f"{' (one is held out for validation)' if at_least > 1 else ''}, and a few dozen to be "
                           "useful")
    return photos


def split(photos: list[Path], val_fraction: float) -> tuple[list[Path], list[Path]]:
    """Training and held-out validation photos: every k-th photo is held out (at least one, at most half)."""
    count = min(len(photos) // 2, max(1, round(len(photos) * val_fraction)))
    step = len(photos) / count
    held = {int(i * step) for i in range(count)}
    return [p for i, p in enumerate(photos) if i not in held], [p for i, p in enumerate(photos) if i in held]


def load_photo(path: Path, max_side: int) -> np.ndarray:
    """A photo as float32 RGB in [0, 1], shrunk (Lanczos) so its longer side is at most `max_side`."""
    with Image.open(path) as image:
        image = image.convert("RGB")
        if max(image.size) > max_side:
            ratio = max_side / max(image.size)
            image = image.resize((max(1, round(image.width * ratio)), max(1, round(image.height * ratio))),
                                 Image.Resampling.LANCZOS)
        return np.asarray(image, dtype=np.float32) / 255.0


def _crop(photo: np.ndarray, size: int, rng: np.random.Generator | None) -> np.ndarray:
    """A size x size crop: random where `rng` is given, the centre otherwise (validation); small photos are
    enlarged first so that every photo gives a crop."""
    h, w = photo.shape[:2]
    if min(h, w) < size:
        ratio = size / min(h, w)
        image = Image.fromarray(np.round(photo * 255).astype(np.uint8))
        photo = np.asarray(image.resize((max(size, round(w * ratio)), max(size, round(h * ratio))),
                                        Image.Resampling.LANCZOS), dtype=np.float32) / 255.0
        h, w = photo.shape[:2]
    top = int(rng.integers(0, h - size + 1)) if rng is not None else (h - size) // 2
    left = int(rng.integers(0, w - size + 1)) if rng is not None else (w - size) // 2
    return photo[top:top + size, left:left + size]


def _upsample(low: np.ndarray, size: int) -> np.ndarray:
    """Lanczos back to size x size, as a stage upsamples its input (float in, float out, 8-bit levels)."""
    image = Image.fromarray(np.round(np.clip(low, 0, 1) * 255).astype(np.uint8))
    return np.asarray(image.resize((size, size), Image.Resampling.LANCZOS), dtype=np.float32) / 255.0


def make_pair(photo: np.ndarray, size: int, factor: int, rng: np.random.Generator | None) -> Pair:
    """A training pair from `photo` (random crop and degradation), or with rng None the pinned validation pair
    (centre crop, clean bicubic downscale)."""
    from engine.builtin.data import degrade, eval_pair

    hr = _crop(photo, size, rng)
    low = degrade(hr, rng, factor) if rng is not None else eval_pair(hr, factor)[1]
    return Pair(hr, _upsample(low, size))
