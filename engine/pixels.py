"""Pixel buffers in and out: bit depth, alpha, conventional resizing, padding to the latent multiple."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from engine.errors import InvalidInput
from engine.photo import pil_to_array

MAX_INPUT_SIDE = 16384


@dataclass(frozen=True)
class Pixels:
    """An image as float32 colour in [0, 1] plus optional alpha, remembering the caller's format."""

    rgb: np.ndarray  # (H, W, 3) float32
    alpha: np.ndarray | None  # (H, W) float32 or None
    dtype: np.dtype  # the caller's sample type: uint8, uint16 or a float type
    grey: bool  # the caller gave one colour channel
    as_pil: bool  # the caller gave a PIL image
    flat: bool = False  # the caller's array had no channel axis: (H, W)

    @property
    def size(self) -> tuple[int, int]:
        return self.rgb.shape[1], self.rgb.shape[0]


def from_image(image: Image.Image | np.ndarray) -> Pixels:
    """Read a PIL image or an (H, W[, C]) array of uint8, uint16 or float in [0, 1], C in 1..4."""
    as_pil = isinstance(image, Image.Image)
    array = pil_to_array(image) if as_pil else np.asarray(image)
    if not isinstance(array, np.ndarray) or array.dtype == object:
        raise InvalidInput(f"expected a PIL image or a numpy array, got {type(image).__name__}")
    flat = array.ndim == 2
    if flat:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[2] not in (1, 2, 3, 4):
        raise InvalidInput(f"expected an image of shape (H, W) or (H, W, 1..4), got {array.shape}")
    height, width, channels = array.shape
    if width < 1 or height < 1:
        raise InvalidInput(f"the image is empty ({width}x{height})")
    if max(width, height) > MAX_INPUT_SIDE:
        raise InvalidInput(f"the image is {width}x{height}; sides above {MAX_INPUT_SIDE} px are not supported")
    if array.dtype == np.uint8:
        values = array.astype(np.float32) / 255.0
    elif array.dtype == np.uint16:
        values = array.astype(np.float32) / 65535.0
    elif np.issubdtype(array.dtype, np.floating):
        values = np.nan_to_num(array.astype(np.float32), nan=0.0, posinf=1.0, neginf=0.0).clip(0.0, 1.0)
    else:
        raise InvalidInput(f"unsupported sample type {array.dtype}; use 8-bit, 16-bit or float images")
    grey = channels in (1, 2)
    colour = np.repeat(values[:, :, :1], 3, axis=2) if grey else values[:, :, :3]
    alpha = values[:, :, -1] if channels in (2, 4) else None
    return Pixels(np.ascontiguousarray(colour), alpha, array.dtype, grey, as_pil, flat)


def read_mask(mask: Image.Image | np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A soft selection mask as float (H, W) in [0, 1] from 8/16-bit, float, bool or PIL; must match `size`.

    A mask saved in colour counts by its grey level (the mean of R, G, B), so a painted RGB mask works.
    """
    array = pil_to_array(mask) if isinstance(mask, Image.Image) else np.asarray(mask)
    if array.dtype == np.uint8:
        values = array.astype(np.float32) / 255.0
    elif array.dtype == np.uint16:
        values = array.astype(np.float32) / 65535.0
    elif np.issubdtype(array.dtype, np.floating) or array.dtype == np.bool_:
        values = np.nan_to_num(array.astype(np.float32)).clip(0.0, 1.0)
    else:
        raise InvalidInput(f"unsupported mask sample type {array.dtype}; use 8-bit, 16-bit, float or bool")
    if values.ndim == 3 and values.shape[2] in (1, 2):
        values = values[:, :, 0]
    elif values.ndim == 3 and values.shape[2] in (3, 4):
        values = values[:, :, :3].mean(axis=2)
    if values.ndim != 2:
        raise InvalidInput(f"a mask is a grey image of shape (H, W); got {array.shape}")
    if (values.shape[1], values.shape[0]) != size:
        raise InvalidInput(f"the mask is {values.shape[1]}x{values.shape[0]} but the image is {size[0]}x{size[1]}; "
                           "they must be the same size")
    return values


def feather_mask(mask: np.ndarray, radius: float) -> np.ndarray:
    """The mask blurred by a Gaussian of standard deviation `radius` pixels (reflected at the borders)."""
    if radius <= 0:
        return mask
    x = torch.from_numpy(np.ascontiguousarray(mask, dtype=np.float32))[None, None]
    return gaussian_blur(x, radius, max(1, math.ceil(3 * radius)), reflect=True)[0, 0].numpy().clip(0.0, 1.0)


def gaussian_blur(x: torch.Tensor, sigma: float, radius: int, *, reflect: bool = False) -> torch.Tensor:
    """Separable Gaussian blur of each channel of (B, C, H, W) over `radius` taps a side, rows then columns;
    borders are replicated, or reflected where the side is long enough (`reflect`)."""
    taps = torch.exp(-0.5 * (torch.arange(-radius, radius + 1, dtype=torch.float64) / sigma) ** 2)
    taps = (taps / taps.sum()).to(x.device, x.dtype)
    channels = x.shape[1]
    for pad, shape in (((0, 0, radius, radius), (-1, 1)), ((radius, radius, 0, 0), (1, -1))):
        padded = _grow_reflect(x, pad) if reflect else F.pad(x, pad, mode="replicate")
        x = F.conv2d(padded, taps.view(1, 1, *shape).repeat(channels, 1, 1, 1), groups=channels)
    return x


def _grow_reflect(x: torch.Tensor, pad: tuple[int, int, int, int]) -> torch.Tensor:
    """Reflect-pad even where the pad exceeds the side (reflect requires pad < side): replicate the rest."""
    left, right, top, bottom = pad
    fits = left < x.shape[-1] and right < x.shape[-1] and top < x.shape[-2] and bottom < x.shape[-2]
    return F.pad(x, pad, mode="reflect" if fits else "replicate")


def mask_box(mask: np.ndarray, context: int) -> tuple[int, int, int, int] | None:
    """(top, left, bottom, right) of the mask's non-zero pixels grown by `context` pixels, or None if empty."""
    rows, cols = np.nonzero(mask.any(axis=1))[0], np.nonzero(mask.any(axis=0))[0]
    if not len(rows):
        return None
    height, width = mask.shape
    return (max(0, int(rows[0]) - context), max(0, int(cols[0]) - context),
            min(height, int(rows[-1]) + 1 + context), min(width, int(cols[-1]) + 1 + context))


def to_image(rgb: np.ndarray, alpha: np.ndarray | None, like: Pixels) -> Image.Image | np.ndarray:
    """Pack float colour (and alpha) back into the format the caller gave us."""
    channels = [rgb.mean(axis=2, keepdims=True) if like.grey else rgb]
    if alpha is not None:
        channels.append(alpha[:, :, None])
    values = np.concatenate(channels, axis=2).clip(0.0, 1.0)
    if like.dtype == np.uint8:
        out = np.round(values * 255.0).astype(np.uint8)
    elif like.dtype == np.uint16:
        out = np.round(values * 65535.0).astype(np.uint16)
    else:
        out = values.astype(like.dtype)
    if out.shape[2] == 1 and (like.flat or like.as_pil):
        out = out[:, :, 0]
    if not like.as_pil:
        return out
    if out.dtype == np.uint16 and out.ndim == 2:
        return Image.fromarray(out, mode="I;16")
    if out.dtype != np.uint8:
        raise InvalidInput("PIL cannot hold 16-bit or float colour images; pass a numpy array instead")
    return Image.fromarray(out)


def conventional_resize(values: np.ndarray, size: tuple[int, int], clip: bool = True) -> np.ndarray:
    """Lanczos resize of float (H, W) or (H, W, C) samples, clipped to [0, 1] unless `clip` is off (for
    colour outside the sRGB gamut, engine/colour.py); the non-AI baseline."""
    planes = values[:, :, None] if values.ndim == 2 else values
    out = np.stack(
        [np.asarray(Image.fromarray(planes[:, :, c], mode="F").resize(size, Image.Resampling.LANCZOS))
         for c in range(planes.shape[2])],
        axis=2,
    )
    out = out.clip(0.0, 1.0) if clip else out
    return out[:, :, 0] if values.ndim == 2 else out


def mask_resize(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A float (H, W) mask in [0, 1] resized to `size` = (width, height) without overshoot or leaks.

    Lanczos rings: a hard edge gave weights above 0 over black input pixels and 0.97 inside white ones.
    The bilinear kernel is never negative, so each output is a weighted mean of its neighbours and stays
    within their range; and an output pixel whose centre lies in a black input pixel gets weight 0 exactly,
    so "where the mask is black the output equals the conventional upscale" holds pixel for pixel.
    """
    image = Image.fromarray(np.ascontiguousarray(mask, dtype=np.float32), mode="F")
    smooth = np.asarray(image.resize(size, Image.Resampling.BILINEAR), dtype=np.float32).clip(0.0, 1.0)
    under = np.asarray(image.resize(size, Image.Resampling.NEAREST))  # the input pixel each output centre lies in
    return np.where(under > 0.0, smooth, np.float32(0.0))


def _grow(x: torch.Tensor, axis: int, target: int) -> torch.Tensor:
    """Extend the last (axis=-1) or second-last (axis=-2) dimension to `target` by reflection."""
    while x.shape[axis] < target:
        length = x.shape[axis]
        amount = min(target - length, length - 1)
        mode = "reflect" if amount > 0 else "replicate"  # a 1-pixel side has nothing to reflect
        amount = amount if amount > 0 else target - length
        x = F.pad(x, (0, amount, 0, 0) if axis == -1 else (0, 0, 0, amount), mode=mode)
    return x


def pad_to_multiple(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Reflect-pad (B, C, H, W) on the right and bottom to a multiple; returns the tensor and the old size.

    Reflection keeps edge statistics natural for the model, and cropping the pad off afterwards means
    no size is ever distorted to fit the model.
    """
    height, width = x.shape[-2:]
    x = _grow(x, -2, -(-height // multiple) * multiple)
    x = _grow(x, -1, -(-width // multiple) * multiple)
    return x, (height, width)


def crop_to(x: torch.Tensor, size_hw: tuple[int, int]) -> torch.Tensor:
    """Undo `pad_to_multiple`."""
    return x[..., : size_hw[0], : size_hw[1]]


def to_model_tensor(rgb: np.ndarray) -> torch.Tensor:
    """(H, W, 3) in [0, 1] -> (1, 3, H, W) in [-1, 1], the range every diffusers VAE expects."""
    return torch.from_numpy(rgb).permute(2, 0, 1).unsqueeze(0).mul(2.0).sub_(1.0)


def from_model_tensor(x: torch.Tensor) -> np.ndarray:
    """(1, 3, H, W) in [-1, 1] -> (H, W, 3) float32 in [0, 1]."""
    # One new buffer, then in place: at 16 MP each full-size temporary is 192 MiB.
    return x[0].float().add(1.0).mul_(0.5).clamp_(0.0, 1.0).permute(1, 2, 0).cpu().numpy()
