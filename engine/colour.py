"""Colour management: the model and the conventional resize work in sRGB-encoded RGB; other profiles are
converted in before and back out after, through LittleCMS.

Pillow's ImageCms (LittleCMS) makes the built-in sRGB profile and reads profiles, but it transforms only
8-bit images (it has no 16-bit or float RGB mode). The transforms themselves therefore run through
LittleCMS's float path in `imagecodecs.cms_transform`: one quantisation at the end whatever the depth, and
unbounded, so nothing is clipped on the way in.

Out of gamut: a wide-gamut colour (Adobe RGB, Display P3, linear float above 1) has sRGB values below 0 or
above 1. The model sees the colour clipped to [0, 1]; the part outside (value - clipped) is resized
conventionally and added back to the model's result before converting out, so saturated colours outside
sRGB come back as they were where the model did not change the picture, instead of being pulled into sRGB.
The rendering intent is relative colorimetric both ways: for the matrix/shaper profiles photos carry it is
exactly invertible (perceptual tables, where a profile has them, are not).
"""

from __future__ import annotations

import functools
import io

import numpy as np

INTENT = 1  # ICC relative colorimetric (0 perceptual, 2 saturation, 3 absolute)
_SPACES = {"RGB ": "rgb", "GRAY": "gray"}


@functools.cache
def srgb_profile() -> bytes:
    """Pillow's (LittleCMS's) built-in sRGB profile: what pixels without a profile are taken to be in."""
    from PIL import ImageCms

    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def colour_space(icc: bytes) -> str | None:
    """`rgb` or `gray` for a profile of that data colour space; None for others (CMYK, Lab) or a bad profile."""
    from PIL import ImageCms

    try:
        profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
    except (OSError, ValueError, TypeError):
        return None
    return _SPACES.get(profile.profile.xcolor_space)


def description(icc: bytes) -> str:
    """The profile's own name ("ClayRGB-elle-V2-g22.icc"), for messages."""
    from PIL import ImageCms

    try:
        return ImageCms.getProfileDescription(ImageCms.ImageCmsProfile(io.BytesIO(icc))).strip()
    except (OSError, ValueError, TypeError, ImageCms.PyCMSError):
        return "an unreadable profile"


def _transform(values: np.ndarray, source: bytes, target: bytes, space_in: str, space_out: str) -> np.ndarray:
    import imagecodecs

    flat = np.ascontiguousarray(values, dtype=np.float32)
    return imagecodecs.cms_transform(flat, source, target, colorspace=space_in, outcolorspace=space_out,
                                     intent=INTENT).astype(np.float32)


SRGB_TOLERANCE = 2e-4  # 0.05 of an 8-bit step: Elle Stone's sRGB (Krita's default) is 1e-4 from LittleCMS's


@functools.lru_cache(maxsize=16)
def is_srgb(icc: bytes) -> bool:
    """True when the profile maps a grid of colours to sRGB within `SRGB_TOLERANCE`: then no transform runs
    (and outputs stay byte-identical to an untagged image's). The sRGB profiles in use differ in their
    curve's constants by less than that; telling them apart would only cost a transform."""
    if colour_space(icc) != "rgb":
        return False
    axis = np.linspace(0.0, 1.0, 9, dtype=np.float32)
    grid = np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), axis=-1).reshape(1, -1, 3)
    try:
        converted = _transform(grid, icc, srgb_profile(), "rgb", "rgb")
    except Exception:  # imagecodecs raises its own CmsError for profiles LittleCMS cannot use
        return False
    return bool(np.abs(converted - grid).max() < SRGB_TOLERANCE)


def usable(icc: bytes | None, grey: bool) -> bool:
    """Whether `icc` needs converting for pixels with this many colour channels (an RGB profile on grey
    pixels, CMYK, Lab or a damaged profile is ignored: the pixels are taken as sRGB)."""
    if not icc:
        return False
    space = colour_space(icc)
    if space != ("gray" if grey else "rgb"):
        return False
    return space == "gray" or not is_srgb(icc)


def to_working(rgb: np.ndarray, icc: bytes, grey: bool = False) -> np.ndarray:
    """(H, W, 3) float colour in `icc` (grey: all three channels equal) -> sRGB-encoded float, unbounded."""
    if grey:
        return _transform(rgb[:, :, 0], icc, srgb_profile(), "gray", "rgb").reshape(rgb.shape[:2] + (3,))
    return _transform(rgb, icc, srgb_profile(), "rgb", "rgb")


def from_working(rgb: np.ndarray, icc: bytes, grey: bool = False) -> np.ndarray:
    """The inverse of `to_working`, with the same intent; grey comes back in all three channels."""
    if grey:
        single = _transform(rgb, srgb_profile(), icc, "rgb", "gray")
        single = single.reshape(rgb.shape[:2] + (1,))
        return np.repeat(single, 3, axis=2)
    return _transform(rgb, srgb_profile(), icc, "rgb", "rgb")


def split_gamut(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """(what the model sees: clipped to [0, 1], what lies outside it or None when nothing does)."""
    clipped = np.clip(rgb, 0.0, 1.0)
    excess = rgb - clipped
    return clipped, (excess if np.any(excess) else None)
