"""Image files and Qt images <-> `Picture`, the window's pixel buffer: RGB or RGBA, 8 or 16 bits, as opened.

The window does not import `engine` (that would load torch and slow its start by seconds, and the engine
may run elsewhere), so it reads and writes files itself with the same libraries: Pillow, pypng for 16-bit
PNG, tifffile for TIFF.
"""

from __future__ import annotations

import io
import os
import stat
import struct
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError
from PyQt6.QtCore import QByteArray
from PyQt6.QtGui import QColorSpace, QImage

from plugin.uprez_client.client import PNG_SIGNATURE, TIFF_SIGNATURES

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


def _read_png16(path: Path) -> np.ndarray:
    import png

    width, height, rows, info = png.Reader(filename=str(path)).asDirect()
    array = np.vstack([np.asarray(row, dtype=np.uint16) for row in rows])
    return array.reshape(height, width, info["planes"])


def _read_pillow(image: Image.Image) -> np.ndarray:
    image.load()  # decode now, so a truncated file fails here
    if image.mode in ("I;16", "I;16L", "I;16B", "I"):
        return np.asarray(image).astype(np.uint16)
    if image.mode == "F":
        return np.asarray(image, dtype=np.float32)
    transparent = "A" in image.mode or "transparency" in image.info
    return np.asarray(image.convert("RGBA" if transparent else "RGB"))


def _upright(array: np.ndarray, orientation: int) -> np.ndarray:
    """EXIF/TIFF orientation 2-8 undone, as engine/photo.py does (not imported: it would load torch)."""
    turns = {2: lambda a: a[:, ::-1], 3: lambda a: a[::-1, ::-1], 4: lambda a: a[::-1],
             5: lambda a: np.swapaxes(a, 0, 1), 6: lambda a: np.rot90(a, -1),
             7: lambda a: np.swapaxes(a[::-1, ::-1], 0, 1), 8: lambda a: np.rot90(a, 1)}
    turn = turns.get(orientation)
    return array if turn is None else np.ascontiguousarray(turn(array))


def _one_picture(name: str, frames: int, what: str = "frames") -> None:
    """Refuse (before decoding) a file holding more than one picture, saying which one would be used."""
    if frames > 1:
        raise BadImage(f"{name} has {frames} {what}; Uprez upscales one picture and would take the first: "
                       f"save the one you want as its own file (or use: uprez upscale --frame N)")


def load_file(path: str | Path) -> Picture:
    """Read a PNG, JPEG, WebP, TIFF (8/16-bit, float) or BMP file, turned upright by its EXIF orientation,
    with its ICC profile; BadImage says why not (a multi-frame file is refused before decoding)."""
    path = Path(path)
    name = path.stem or "image"
    if not path.is_file():
        raise BadImage(f"{path} does not exist or is not a file")
    try:
        with open(path, "rb") as f:
            head = f.read(33)
        if path.suffix.lower() in (".tif", ".tiff") or head[:4] in TIFF_SIGNATURES:
            import tifffile

            with tifffile.TiffFile(str(path)) as tif:
                _one_picture(path.name, len(tif.pages), "pages")
                page = tif.pages.first
                array = page.asarray()
                tags = page.tags
                icc = bytes(tags[34675].value) if 34675 in tags else None
                orientation = int(tags[274].value) if 274 in tags else 1
            if array.ndim == 3 and array.shape[0] in (1, 2, 3, 4) and array.shape[2] > 4:
                array = np.moveaxis(array, 0, 2)  # planar TIFF
        else:
            with Image.open(path) as image:
                _one_picture(path.name, 1 if image.format == "MPO" else getattr(image, "n_frames", 1))
                icc = image.info.get("icc_profile") or None
                if head.startswith(PNG_SIGNATURE) and len(head) >= 25 and head[24] == 16:
                    array = _read_png16(path)
                else:
                    array = _read_pillow(image)
                orientation = int(image.getexif().get(0x0112, 1) or 1)
        array = _upright(array, orientation)
    except BadImage:
        raise
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError) as exc:
        raise BadImage(f"cannot open {path.name}: it is not an image Uprez can read, or it is damaged ({exc})") \
            from exc
    except Exception as exc:  # pypng and tifffile raise their own types for corrupt files
        raise BadImage(f"cannot open {path.name}: {type(exc).__name__}: {exc}") from exc
    return Picture(_normalise(array, path.name), name, icc)


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


def _write_png16(path: Path, pixels: np.ndarray, icc: bytes | None = None) -> None:
    import png

    height, width, planes = pixels.shape
    writer = png.Writer(width, height, greyscale=False, alpha=planes == 4, bitdepth=16)
    buffer = io.BytesIO()
    writer.write(buffer, pixels.reshape(height, width * planes))
    data = buffer.getvalue()
    if icc:  # pypng writes no iCCP: put one right after IHDR (8 signature + 25 IHDR bytes)
        body = b"iCCP" + b"ICC Profile\x00\x00" + zlib.compress(icc)
        data = data[:33] + struct.pack(">I", len(body) - 4) + body + struct.pack(">I", zlib.crc32(body)) + data[33:]
    path.write_bytes(data)


def save_file(picture: Picture, path: str | Path, overwrite: bool = False) -> None:
    """Write PNG/TIFF at the picture's depth, WebP/JPEG at 8 bits; atomically, never over a file unless told."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".png", ".tif", ".tiff", ".webp", ".jpg", ".jpeg"):
        raise BadImage(f"cannot save as {suffix or 'a file without an extension'}; use .png, .tif, .webp or .jpg")
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists")
    fd, temp_name = tempfile.mkstemp(prefix=".uprez-", suffix=suffix, dir=path.parent)
    os.close(fd)
    temp = Path(temp_name)
    try:
        if suffix in (".tif", ".tiff"):
            import tifffile

            tifffile.imwrite(str(temp), picture.pixels, compression="zlib", iccprofile=picture.icc,
                             photometric="rgb", extrasamples=("unassalpha",) if picture.has_alpha else None)
        elif suffix == ".png" and picture.depth == 16:
            _write_png16(temp, picture.pixels, picture.icc)
        else:
            image = Image.fromarray(to_8bit(picture).pixels)
            if suffix in (".jpg", ".jpeg"):
                image = image.convert("RGB")  # JPEG has no alpha
            options: dict[str, object] = {"quality": 95} if suffix in (".jpg", ".jpeg", ".webp") else {}
            if picture.icc:
                options["icc_profile"] = picture.icc
            image.save(temp, **options)
        # mkstemp makes the file 0600; a saved picture gets the mode of the file it replaces, or a new
        # file's usual mode (0666 less the umask), like any other program's output.
        os.chmod(temp, stat.S_IMODE(path.stat().st_mode) if path.exists() else 0o666 & ~current_umask())
        os.replace(temp, path)  # a failure never leaves half a file under `path`
    finally:
        temp.unlink(missing_ok=True)


def current_umask() -> int:
    """The process's umask, read without changing it where the system allows (Linux), else set and restored."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
