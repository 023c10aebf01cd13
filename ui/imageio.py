"""Image files and Qt images <-> `Picture`, the window's pixel buffer: RGB or RGBA, 8 or 16 bits, as opened.

Files are read and written by the engine's own `engine.imagefile` (which loads no torch): the same header
checks before decoding, 16-bit PNG, orientation and atomic writes as the command line.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PyQt6.QtCore import QByteArray
from PyQt6.QtGui import QColorSpace, QImage

from engine.errors import InvalidInput
from engine.imagefile import read_photo, write_image
from engine.photo import PhotoMeta

OPEN_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp")
SAVE_FORMATS = {  # file dialog filter -> suffix
    "PNG (*.png)": ".png",
    "TIFF (*.tif *.tiff)": ".tif",
    "WebP (*.webp)": ".webp",
    "JPEG (*.jpg *.jpeg)": ".jpg",
}
OPEN_FILTER = "Images (" + " ".join("*" + s for s in OPEN_SUFFIXES) + ");;All files (*)"


class BadImage(ValueError):
    """A file or clipboard content that cannot be used as an image; the message says what to do."""


@dataclass(frozen=True)
class Picture:
    """Pixels as (H, W, 3 or 4) uint8 or uint16, in RGB(A) order; `name` is what a saved file starts with;
    `icc` the ICC profile the pixels are in (None = sRGB), sent with the job and saved with the result."""

    pixels: np.ndarray
    name: str = "image"
    icc: bytes | None = None

    def __post_init__(self) -> None:
        if self.pixels.ndim != 3 or self.pixels.shape[2] not in (3, 4):
            raise ValueError(f"a Picture needs (H, W, 3|4) pixels, got shape {self.pixels.shape}")
        if self.pixels.dtype not in (np.uint8, np.uint16):
            raise ValueError(f"a Picture holds uint8 or uint16, got {self.pixels.dtype}")

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def depth(self) -> int:
        return 16 if self.pixels.dtype == np.uint16 else 8

    @property
    def has_alpha(self) -> bool:
        return self.pixels.shape[2] == 4

    @property
    def channels(self) -> str:
        return "RGBA" if self.has_alpha else "RGB"

    def raw(self) -> bytes:
        """The engine's raw buffer: packed samples, little-endian for 16 bits."""
        # copy=False: on a little-endian machine (and always for 8 bits) tobytes() makes the only copy.
        return self.pixels.astype(self.pixels.dtype.newbyteorder("<"), copy=False).tobytes()

    def describe(self) -> str:
        alpha = ", alpha" if self.has_alpha else ""
        return f"{self.width}×{self.height}, {self.depth}-bit{alpha}"


def _normalise(array: np.ndarray, source: str) -> np.ndarray:
    """Any decoded array -> (H, W, 3|4) uint8/uint16; grey becomes RGB, float becomes 16-bit."""
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[2] not in (1, 2, 3, 4):
        raise BadImage(f"{source} has an image layout Uprez cannot use (shape {array.shape}); "
                       "save it as an RGB or RGBA PNG or TIFF")
    if array.dtype.kind == "f":
        array = np.round(np.clip(np.nan_to_num(array), 0.0, 1.0) * 65535.0).astype(np.uint16)
    elif array.dtype not in (np.uint8, np.uint16):
        raise BadImage(f"{source} stores {array.dtype} samples; Uprez opens 8- and 16-bit images "
                       "(and float TIFF): convert it to a 16-bit PNG or TIFF")
    channels = array.shape[2]
    if channels in (1, 2):  # grey (+ alpha): the engine's colour path wants RGB
        grey = np.repeat(array[:, :, :1], 3, axis=2)
        array = grey if channels == 1 else np.concatenate([grey, array[:, :, 1:2]], axis=2)
    return np.ascontiguousarray(array)


def load_file(path: str | Path) -> Picture:
    """Read a PNG, JPEG, WebP, TIFF (8/16-bit, float) or BMP file, turned upright by its EXIF orientation,
    with its ICC profile; BadImage says why not (a multi-frame file is refused before decoding)."""
    path = Path(path)
    if not path.is_file():
        raise BadImage(f"{path} does not exist or is not a file")
    try:
        photo = read_photo(path)
    except InvalidInput as exc:
        raise BadImage(str(exc)) from exc
    return Picture(_normalise(photo.pixels, path.name), path.stem or "image", photo.meta.icc)


def from_raw(data: bytes, width: int, height: int, channels: str, depth: int, name: str = "image",
             icc: bytes | None = None) -> Picture:
    """The engine's raw result (RGB/RGBA, 8/16-bit little-endian) as a Picture, in the profile `icc`."""
    dtype = np.dtype("<u2") if depth == 16 else np.dtype(np.uint8)
    array = np.frombuffer(data, dtype=dtype).reshape(height, width, len(channels))
    if channels not in ("RGB", "RGBA"):
        raise ValueError(f"expected an RGB or RGBA result, got {channels}")
    return Picture(array.astype(dtype.newbyteorder("=")), name, icc)


def to_qimage(picture: Picture) -> QImage:
    """A QImage that owns a copy of the pixels (16-bit pictures stay 16-bit, for display)."""
    pixels = picture.pixels
    if picture.depth == 16:
        if not picture.has_alpha:
            pixels = np.concatenate([pixels, np.full(pixels.shape[:2] + (1,), 65535, np.uint16)], axis=2)
        fmt = QImage.Format.Format_RGBA64 if picture.has_alpha else QImage.Format.Format_RGBX64
    else:
        fmt = QImage.Format.Format_RGBA8888 if picture.has_alpha else QImage.Format.Format_RGB888
    pixels = np.ascontiguousarray(pixels)
    image = QImage(pixels.data, picture.width, picture.height, pixels.strides[0], fmt)
    image = image.copy()  # detach from the numpy buffer
    if picture.icc:  # shown colour-managed: Qt converts from the picture's profile to the screen's sRGB
        space = QColorSpace.fromIccProfile(QByteArray(picture.icc))
        if space.isValid():
            image.setColorSpace(space)
            image.convertToColorSpace(QColorSpace(QColorSpace.NamedColorSpace.SRgb))
    return image


def from_qimage(image: QImage, name: str = "pasted") -> Picture:
    """A clipboard or dropped QImage as a Picture; 16-bit QImages stay 16-bit."""
    if image.isNull():
        raise BadImage("the clipboard holds no image; copy an image (or an image file) first")
    wide = image.depth() >= 64
    alpha = image.hasAlphaChannel()
    fmt = QImage.Format.Format_RGBA64 if wide else QImage.Format.Format_RGBA8888
    converted = image.convertToFormat(fmt)
    width, height = converted.width(), converted.height()
    dtype = np.uint16 if wide else np.uint8
    bits = converted.constBits()
    bits.setsize(converted.sizeInBytes())
    row_items = converted.bytesPerLine() // np.dtype(dtype).itemsize
    array = np.frombuffer(bits, dtype=dtype).reshape(height, row_items)[:, :width * 4].reshape(height, width, 4)
    array = array.copy()
    return Picture(array if alpha else np.ascontiguousarray(array[:, :, :3]), name)


def to_8bit(picture: Picture) -> Picture:
    if picture.depth == 8:
        return picture
    scaled = np.round(picture.pixels.astype(np.float32) * (255.0 / 65535.0)).astype(np.uint8)
    return Picture(scaled, picture.name, picture.icc)


def save_file(picture: Picture, path: str | Path, overwrite: bool = False) -> None:
    """Write PNG/TIFF at the picture's depth, WebP/JPEG at 8 bits, with its profile; atomically (the engine's
    write_image), never over a file unless told."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".png", ".tif", ".tiff", ".webp", ".jpg", ".jpeg"):
        raise BadImage(f"cannot save as {suffix or 'a file without an extension'}; use .png, .tif, .webp or .jpg")
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists")
    try:
        write_image(path, picture.pixels, PhotoMeta(icc=picture.icc))
    except InvalidInput as exc:
        raise BadImage(str(exc)) from exc
