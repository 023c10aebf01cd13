"""Image files on disk: 8- and 16-bit PNG and TIFF kept at their depth, JPEG and WebP through Pillow."""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from engine.errors import InvalidInput
from engine.pixels import pil_to_array

READABLE = {".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp"}
WRITABLE = {".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff"}
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


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


def read_image(path: str | Path) -> np.ndarray:
    """(H, W[, C]) array of uint8, uint16 or float32 as stored; a clear InvalidInput otherwise."""
    path = Path(path)
    if not path.is_file():
        raise InvalidInput(f"input image not found: {path}")
    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            import tifffile

            array = tifffile.imread(str(path))
            if array.ndim == 3 and array.shape[0] in (1, 2, 3, 4) and array.shape[2] > 4:
                array = np.moveaxis(array, 0, 2)  # planar TIFF
            return array.astype(np.float32) if array.dtype == np.float64 else array
        if _png_bit_depth(path) == 16:
            return _read_png16(path)
        with Image.open(path) as image:
            image.load()  # decode now, so a truncated file fails here and not halfway through a job
            return np.array(pil_to_array(image))
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError) as exc:
        raise InvalidInput(f"cannot read {path} as an image ({exc}); is the file complete and an image?") from exc
    except Exception as exc:  # pypng and tifffile raise their own error types for corrupt files
        raise InvalidInput(f"cannot read {path} as an image ({type(exc).__name__}: {exc})") from exc


def _write_png16(path: Path, array: np.ndarray) -> None:
    import png

    planes = 1 if array.ndim == 2 else array.shape[2]
    height, width = array.shape[:2]
    writer = png.Writer(width, height, greyscale=planes in (1, 2), alpha=planes in (2, 4), bitdepth=16)
    with open(path, "wb") as f:
        writer.write(f, array.reshape(height, width * planes))


def write_image(path: str | Path, array: np.ndarray) -> None:
    """Write atomically (temp file + rename), so a failure never leaves half a file under `path`."""
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

            tifffile.imwrite(str(temp), array, compression="zlib")
        elif array.dtype == np.uint16 and suffix == ".png":
            _write_png16(temp, array)
        else:
            if array.dtype != np.uint8:
                # JPEG and WebP hold 8 bits; round rather than truncate.
                scale = 255.0 / 65535.0 if array.dtype == np.uint16 else 255.0
                array = np.round(array.astype(np.float32) * scale).clip(0, 255).astype(np.uint8)
            image = Image.fromarray(array)
            if suffix in (".jpg", ".jpeg") and image.mode in ("RGBA", "LA"):
                image = image.convert("RGB" if image.mode == "RGBA" else "L")
            options = {"quality": 95} if suffix in (".jpg", ".jpeg", ".webp") else {}
            image.save(temp, **options)
        os.chmod(temp, output_mode(path))
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)


def output_mode(path: Path) -> int:
    """The permissions a written image gets: those of the file it replaces, else 0666 less the umask.

    mkstemp makes its file 0600, which the rename would carry over: a user's output readable only by them.
    (ui/imageio.py has the same rule; the window avoids importing the engine, which loads torch.)
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
