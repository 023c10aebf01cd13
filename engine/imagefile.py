"""Image files on disk: 8- and 16-bit PNG and TIFF kept at their depth, JPEG and WebP through Pillow."""

from __future__ import annotations

import io
import os
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from engine.errors import InvalidInput
from engine.photo import PhotoMeta, from_pillow, from_tiff_page, orient, pil_to_array, tiff_options, upright
from engine.pngmeta import with_metadata
from engine.probe import DEFAULT_MAX_PIXELS, check, declared
from plugin.uprez_client.protocol import PNG_SIGNATURE as _PNG_SIGNATURE
from plugin.uprez_client.protocol import TIFF_SIGNATURES

READABLE = {".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp"}
WRITABLE = {".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff"}


def _png_bit_depth(path: Path) -> int | None:
    with open(path, "rb") as f:
        head = f.read(33)
    if len(head) < 25 or not head.startswith(_PNG_SIGNATURE):
        return None
    return head[24]  # IHDR's bit depth byte


def _read_png16(path: Path) -> np.ndarray:
    import png

    width, height, rows, info = png.Reader(filename=str(path)).asDirect()
    planes = info["planes"]
    array = np.vstack([np.asarray(row, dtype=np.uint16) for row in rows])
    return array.reshape(height, width, planes)


@dataclass(frozen=True)
class Photo:
    """A read image: its pixels turned upright, and the profile and metadata to carry to the output."""

    pixels: np.ndarray
    meta: PhotoMeta = PhotoMeta()


def read_image(path: str | Path, *, frame: int | None = None, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """(H, W[, C]) array of uint8, uint16 or float32 as stored, upright; a clear InvalidInput otherwise."""
    return read_photo(path, frame=frame, max_pixels=max_pixels).pixels


def read_photo(path: str | Path, *, frame: int | None = None, max_pixels: int = DEFAULT_MAX_PIXELS) -> Photo:
    """The image (frame/page `frame`, 1-based, of a multi-frame file) upright, with its profile and metadata.

    Its headers are checked first (one image, size within `max_pixels`): nothing is decoded before that.
    """
    path = Path(path)
    if not path.is_file():
        raise InvalidInput(f"input image not found: {path}")
    index = check(declared(path), str(path), frame=frame, max_pixels=max_pixels)
    try:
        if path.suffix.lower() in (".tif", ".tiff") or _tiff_signature(path):
            import tifffile

            with tifffile.TiffFile(str(path)) as tif:
                page = tif.pages[index]
                array = page.asarray()
                meta = from_tiff_page(page)
            if array.ndim == 3 and array.shape[0] in (1, 2, 3, 4) and array.shape[2] > 4:
                array = np.moveaxis(array, 0, 2)  # planar TIFF
            array = array.astype(np.float32) if array.dtype == np.float64 else array
        else:
            with Image.open(path) as image:
                if index:
                    image.seek(index)
                meta = from_pillow(image)
                if _png_bit_depth(path) == 16:
                    array = _read_png16(path)
                else:
                    image.load()  # decode now, so a truncated file fails here and not halfway through a job
                    array = np.array(pil_to_array(image))
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError) as exc:
        raise InvalidInput(f"cannot read {path} as an image ({exc}); is the file complete and an image?") from exc
    except Exception as exc:  # pypng and tifffile raise their own error types for corrupt files
        raise InvalidInput(f"cannot read {path} as an image ({type(exc).__name__}: {exc})") from exc
    return Photo(orient(array, meta.orientation), upright(meta))


def _tiff_signature(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(4) in TIFF_SIGNATURES


def _write_png16(path: Path, array: np.ndarray) -> None:
    import png

    planes = 1 if array.ndim == 2 else array.shape[2]
    height, width = array.shape[:2]
    writer = png.Writer(width, height, greyscale=planes in (1, 2), alpha=planes in (2, 4), bitdepth=16)
    with open(path, "wb") as f:
        writer.write(f, array.reshape(height, width * planes))


def write_image(path: str | Path, array: np.ndarray, meta: PhotoMeta | None = None) -> None:
    """Write atomically (temp file + rename), so a failure never leaves half a file under `path`.

    `meta` is carried where the format allows: the ICC profile in all four (PNG iCCP, TIFF, JPEG, WebP);
    EXIF in PNG, JPEG and WebP; XMP in all four; DPI in PNG, TIFF and JPEG.
    """
    meta = meta or PhotoMeta()
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in WRITABLE:
        raise InvalidInput(f"cannot write {suffix or 'files without an extension'}; use one of "
                           f"{', '.join(sorted(WRITABLE))}")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp_name = tempfile.mkstemp(prefix=".uprez-", suffix=suffix, dir=path.parent)
    os.close(fd)
    temp = Path(temp_name)
    try:
        if suffix in (".tif", ".tiff"):
            import tifffile

            tifffile.imwrite(str(temp), array, compression="zlib", **tiff_options(meta))
        elif array.dtype == np.uint16 and suffix == ".png":
            _write_png16(temp, array)
            temp.write_bytes(with_metadata(temp.read_bytes(), meta))
        else:
            if array.dtype != np.uint8:
                # JPEG and WebP hold 8 bits; round rather than truncate.
                scale = 255.0 / 65535.0 if array.dtype == np.uint16 else 255.0
                array = np.round(array.astype(np.float32) * scale).clip(0, 255).astype(np.uint8)
            image = Image.fromarray(array)
            if suffix in (".jpg", ".jpeg") and image.mode in ("RGBA", "LA"):
                image = image.convert("RGB" if image.mode == "RGBA" else "L")
            options = {"quality": 95} if suffix in (".jpg", ".jpeg", ".webp") else {}
            if suffix == ".png":
                buffer = io.BytesIO()
                image.save(buffer, format="PNG")
                temp.write_bytes(with_metadata(buffer.getvalue(), meta))
            else:
                image.save(temp, **options, **_pillow_meta(meta, suffix))
        os.chmod(temp, output_mode(path))
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)


def _pillow_meta(meta: PhotoMeta, suffix: str) -> dict[str, object]:
    """Pillow's save options for JPEG and WebP."""
    options: dict[str, object] = {}
    if meta.icc:
        options["icc_profile"] = meta.icc
    if meta.exif:
        options["exif"] = meta.exif
    if meta.xmp:
        options["xmp"] = meta.xmp
    if meta.dpi and suffix in (".jpg", ".jpeg"):
        options["dpi"] = tuple(round(value) for value in meta.dpi)
    return options


def output_mode(path: Path) -> int:
    """The permissions a written image gets: those of the file it replaces, else 0666 less the umask.

    mkstemp makes its file 0600, which the rename would carry over: a user's output readable only by them.
    The window saves through write_image too.
    """
    if path.exists():
        return stat.S_IMODE(path.stat().st_mode)
    try:  # Linux says the umask without changing it
        with open("/proc/self/status", encoding="ascii") as f:
            umask = next(int(line.split()[1], 8) for line in f if line.startswith("Umask:"))
    except (OSError, ValueError, StopIteration):
        umask = os.umask(0o022)
        os.umask(umask)
    return 0o666 & ~umask
