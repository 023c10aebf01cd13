"""Real-world degradations for training the built-in model (after Real-ESRGAN's second-order pipeline,
Wang et al. 2021): blur with isotropic or anisotropic Gaussian kernels, resizes with random kernels,
Gaussian and Poisson noise (colour or grey), JPEG through Pillow, applied twice in random order and strength.

Every function is pure: images are float32 (H, W, 3) in [0, 1], randomness comes only from the
`numpy.random.Generator` passed in, so a seed fixes the output bit for bit.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

import numpy as np
from PIL import Image

RESIZE_KERNELS = (Image.Resampling.BICUBIC, Image.Resampling.BILINEAR, Image.Resampling.BOX)  # BOX = area


@dataclass(frozen=True)
class Order:
    """Ranges of one order of the pipeline (strengths in HR pixels and 8-bit levels)."""

    blur_p: float
    blur_sigma: tuple[float, float]
    aniso_p: float  # share of the blurs that are anisotropic (two sigmas and an angle)
    noise_p: float
    gaussian_sigma: tuple[float, float]  # in 8-bit levels
    poisson_scale: tuple[float, float]  # multiplies shot noise at 255 photon counts per level range
    poisson_p: float  # share of the noise that is Poisson rather than Gaussian
    grey_p: float  # share of the noise that is one plane for all channels
    jpeg_p: float
    jpeg_quality: tuple[int, int]


# Milder than Real-ESRGAN's x4 recipe (noise up to 30 levels, blur sigma up to 3): every stage of the engine
# is a x2 step, and v1's notes show strong noise teaching the model to wipe the fine grain of clean photos.
FIRST = Order(blur_p=0.6, blur_sigma=(0.2, 1.6), aniso_p=0.5, noise_p=0.5, gaussian_sigma=(1.0, 12.0),
              poisson_scale=(0.05, 1.5), poisson_p=0.4, grey_p=0.4, jpeg_p=0.7, jpeg_quality=(30, 95))
SECOND = Order(blur_p=0.4, blur_sigma=(0.2, 1.0), aniso_p=0.5, noise_p=0.4, gaussian_sigma=(1.0, 8.0),
               poisson_scale=(0.05, 1.0), poisson_p=0.4, grey_p=0.4, jpeg_p=0.8, jpeg_quality=(30, 95))
SECOND_ORDER_P = 0.6  # the rest stop after the first order


def quantise(image: np.ndarray) -> np.ndarray:
    """Round to the 8-bit levels a real file has."""
    return (np.round(np.clip(image, 0.0, 1.0) * 255.0) / 255.0).astype(np.float32)


def gaussian_kernel(sigma_x: float, sigma_y: float, theta: float, size: int | None = None) -> np.ndarray:
    """A normalised 2-D Gaussian kernel, odd `size` (default covers 3 sigma), axes rotated by theta radians."""
    if sigma_x <= 0 or sigma_y <= 0:
        raise ValueError(f"kernel sigmas must be positive, got {sigma_x}, {sigma_y}")
    if size is None:
        size = 2 * max(1, math.ceil(3.0 * max(sigma_x, sigma_y))) + 1
    if size % 2 == 0:
        raise ValueError(f"kernel size must be odd, got {size}")
    rotation = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    covariance = rotation @ np.diag([sigma_x**2, sigma_y**2]) @ rotation.T
    inverse = np.linalg.inv(covariance)
    r = np.arange(size, dtype=np.float64) - size // 2
    yy, xx = np.meshgrid(r, r, indexing="ij")
    points = np.stack([xx, yy], axis=-1)
    kernel = np.exp(-0.5 * np.einsum("...i,ij,...j->...", points, inverse, points))
    return (kernel / kernel.sum()).astype(np.float32)


def blur(image: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Correlate every channel with `kernel` (reflect-padded): same size out."""
    radius_y, radius_x = kernel.shape[0] // 2, kernel.shape[1] // 2
    pad_mode = "reflect" if min(image.shape[:2]) > max(radius_y, radius_x) else "edge"
    padded = np.pad(image, ((radius_y, radius_y), (radius_x, radius_x), (0, 0)), mode=pad_mode)
    height, width = image.shape[:2]
    out = np.zeros_like(image, dtype=np.float32)
    for dy in range(kernel.shape[0]):
        for dx in range(kernel.shape[1]):
            weight = kernel[dy, dx]
            if weight > 1e-7:
                out += weight * padded[dy : dy + height, dx : dx + width]
    return out


def resize(image: np.ndarray, size: tuple[int, int], kernel: Image.Resampling) -> np.ndarray:
    """Resize float (H, W, 3) to size = (W, H) channel by channel in float precision, clipped to [0, 1]."""
    planes = [Image.fromarray(np.ascontiguousarray(image[:, :, c], dtype=np.float32), mode="F").resize(size, kernel)
              for c in range(image.shape[2])]
    return np.stack([np.asarray(plane) for plane in planes], axis=2).clip(0.0, 1.0)


def gaussian_noise(image: np.ndarray, rng: np.random.Generator, sigma: float, grey: bool) -> np.ndarray:
    """Add zero-mean Gaussian noise of `sigma` 8-bit levels; grey: one plane shared by the channels."""
    shape = (*image.shape[:2], 1 if grey else image.shape[2])
    return (image + rng.normal(0.0, sigma / 255.0, shape).astype(np.float32)).clip(0.0, 1.0)


def poisson_noise(image: np.ndarray, rng: np.random.Generator, scale: float, grey: bool) -> np.ndarray:
    """Shot noise (Poisson counts at 255 per unit), scaled by `scale`; grey: computed on the luma."""
    if grey:
        luma = image @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
        noise = rng.poisson(luma * 255.0) / 255.0 - luma
        noise = noise[:, :, None]
    else:
        noise = rng.poisson(image * 255.0) / 255.0 - image
    return (image + scale * noise.astype(np.float32)).clip(0.0, 1.0)


def jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    """Encode and decode through Pillow's JPEG at `quality` (its default 4:2:0 chroma, as most files)."""
    buffer = io.BytesIO()
    Image.fromarray(np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)).save(buffer, "JPEG", quality=quality)
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        return np.asarray(decoded.convert("RGB"), dtype=np.float32) / 255.0


def random_kernel(rng: np.random.Generator, sigma: tuple[float, float], aniso_p: float) -> np.ndarray:
    """An isotropic Gaussian, or (with probability aniso_p) an anisotropic one at a random angle."""
    if rng.random() < aniso_p:
        return gaussian_kernel(rng.uniform(*sigma), rng.uniform(*sigma), rng.uniform(0.0, math.pi))
    s = rng.uniform(*sigma)
    return gaussian_kernel(s, s, 0.0)


def random_noise(image: np.ndarray, rng: np.random.Generator, order: Order) -> np.ndarray:
    grey = rng.random() < order.grey_p
    if rng.random() < order.poisson_p:
        return poisson_noise(image, rng, rng.uniform(*order.poisson_scale), grey)
    return gaussian_noise(image, rng, rng.uniform(*order.gaussian_sigma), grey)


def random_resize(image: np.ndarray, rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    return resize(image, size, RESIZE_KERNELS[rng.integers(len(RESIZE_KERNELS))])


def apply_order(image: np.ndarray, rng: np.random.Generator, order: Order, size: tuple[int, int],
                jpeg_last: bool = True) -> np.ndarray:
    """One order: blur, resize to `size` (W, H), noise, 8-bit rounding, JPEG (if jpeg_last, else before the
    resize: Real-ESRGAN's two final orders, so the block grid sits either on the output's grid or under it)."""
    if rng.random() < order.blur_p:
        image = blur(image, random_kernel(rng, order.blur_sigma, order.aniso_p))
    compress = rng.random() < order.jpeg_p
    quality = int(rng.integers(order.jpeg_quality[0], order.jpeg_quality[1] + 1))
    if compress and not jpeg_last:
        image = jpeg(quantise(image), quality)
    image = random_resize(image, rng, size)
    if rng.random() < order.noise_p:
        image = random_noise(image, rng, order)
    image = quantise(image)
    if compress and jpeg_last:
        image = jpeg(image, quality)
    return image


def second_order(hr: np.ndarray, rng: np.random.Generator, factor: int) -> np.ndarray:
    """The low-res copy (H // factor, W // factor) of `hr` (H, W multiples of factor) through one or two
    random orders. The first order lands on a random size between the HR and 0.7x the target (so the
    second's resize is a downscale or a mild upscale); the last always lands on the target."""
    height, width = hr.shape[:2]
    target = (width // factor, height // factor)
    if rng.random() >= SECOND_ORDER_P:
        return apply_order(hr, rng, FIRST, target, jpeg_last=True)
    ratio = rng.uniform(0.7 / factor, 1.0)
    middle = (max(1, round(width * ratio)), max(1, round(height * ratio)))
    image = apply_order(hr, rng, FIRST, middle, jpeg_last=True)
    return apply_order(image, rng, SECOND, target, jpeg_last=bool(rng.random() < 0.5))
