"""What an image file declares, read from its headers without decoding a pixel, and the checks made on it
before any decoding: one image (not pages, frames, sub-IFDs or a volume) and size within the limits.

A 1 MB TIFF can declare 300 zlib pages of 1024x1024 (900 MiB decoded), a PNG 60000x60000 pixels: both
are refused here, from their headers, before the decoder allocates anything.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

from engine.errors import InvalidInput
from plugin.uprez_client.protocol import TIFF_SIGNATURES

DEFAULT_MAX_PIXELS = 16384 * 16384  # the engine's largest side, squared (engine/pixels.py MAX_INPUT_SIDE)
MAX_SAMPLE_BYTES = 4 * 4  # the widest pixel decoded: four float32 samples


@dataclass(frozen=True)
class Declared:
    """An image file's header: its kind, size, frames (pages), samples per pixel and bytes per sample."""

    kind: str  # png, tiff, jpeg, webp, gif, bmp
    width: int
    height: int
    frames: int = 1
    samples: int = 3
    sample_bytes: int = 1
    problem: str = ""  # a structure that is not one image (sub-IFDs, a volume), said in words

    @property
    def frame_bytes(self) -> int:
        return self.width * self.height * self.samples * self.sample_bytes

    @property
    def total_bytes(self) -> int:
        return self.frame_bytes * self.frames


def _pillow(source: Path | bytes) -> Declared:
    from PIL import Image

    opened = Image.open(io.BytesIO(source) if isinstance(source, bytes) else source)
    with opened as image:  # Image.open reads the headers only; nothing is decoded until load()
        kind = (image.format or "image").lower()
        # An MPO (a JPEG from a phone or 3D camera) holds previews or a depth map after the photo itself:
        # that is one picture, not pages, and Pillow decodes the primary image.
        frames = 1 if kind == "mpo" else int(getattr(image, "n_frames", 1) or 1)
        kind = "jpeg" if kind == "mpo" else kind
        mode = image.mode
        width, height = image.size
        sample_bytes = 2 if mode.startswith("I;16") else 4 if mode in ("I", "F") else 1
        samples = len(image.getbands())
        if kind == "png" and isinstance(source, bytes) and source[24:25] == b"\x10":
            sample_bytes = 2  # a 16-bit PNG: Pillow's mode says 8-bit RGB, pypng decodes 16 bits
        elif kind == "png" and isinstance(source, Path):
            with open(source, "rb") as f:
                sample_bytes = 2 if f.read(25)[24:25] == b"\x10" else sample_bytes
        return Declared(kind, width, height, frames, samples, sample_bytes)


def _tiff(source: Path | bytes) -> Declared:
    import tifffile

    with tifffile.TiffFile(io.BytesIO(source) if isinstance(source, bytes) else source) as tif:
        pages = len(tif.pages)  # walks the IFD chain (headers only)
        page = tif.pages.first
        shape = page.shape
        problem = ""
        if page.subifds:
            problem = f"{len(page.subifds)} sub-image(s) (sub-IFDs) beside the main image"
        elif len(shape) > 3 or (len(shape) == 3 and min(shape[0], shape[2]) > 4):
            problem = f"a {len(shape)}-dimensional series of shape {shape}, not a picture"
        planar = len(shape) == 3 and shape[0] in (1, 2, 3, 4) and shape[2] > 4
        if len(shape) == 2:
            height, width, samples = shape[0], shape[1], 1
        elif planar:
            samples, height, width = shape[0], shape[1], shape[2]
        else:
            height, width = shape[0], shape[1]
            samples = shape[2] if len(shape) == 3 else 1
        return Declared("tiff", int(width), int(height), pages, int(samples), int(page.dtype.itemsize) if
                        page.dtype is not None else 1, problem)


def declared(source: Path | bytes) -> Declared:
    """The header of a file (path) or of bytes; InvalidInput when it is no image we read, or damaged."""
    head = source[:4] if isinstance(source, bytes) else _head(source)
    name = "the image" if isinstance(source, bytes) else str(source)
    from PIL import Image

    try:
        if head in TIFF_SIGNATURES:
            return _tiff(source)
        return _pillow(source)
    except InvalidInput:
        raise
    except Image.DecompressionBombError as exc:  # Pillow's own header check, at twice its default limit
        raise InvalidInput(f"{name} declares a picture too large to decode ({exc}); crop or shrink it first") \
            from exc
    except Exception as exc:  # Pillow and tifffile each raise their own types for damaged headers
        raise InvalidInput(f"cannot read {name} as an image ({type(exc).__name__}: {exc}); "
                           "is the file complete and an image?") from exc


def _head(path: Path) -> bytes:
    with open(path, "rb") as f:
        return f.read(4)


def check(info: Declared, name: str, *, frame: int | None = None, max_pixels: int = DEFAULT_MAX_PIXELS,
          frame_hint: str | None = "--frame N") -> int:
    """The 0-based frame to decode, after refusing (in one line) anything but one image within the limits.

    `frame` is 1-based as the user gives it; None means the file must hold exactly one image. `frame_hint`
    is how the caller picks a frame (the CLI's option); None where it cannot (the server: send one page).
    """
    if info.problem:
        raise InvalidInput(f"{name} holds {info.problem}; Uprez upscales one picture: save the one you want "
                           "as its own file")
    if frame is None and info.frames > 1:
        what = "pages" if info.kind == "tiff" else "frames"
        how = (f"choose it (or another) with {frame_hint.replace('N', '1')}" if frame_hint else
               "send the one you want as its own file")
        raise InvalidInput(f"{name} has {info.frames} {what} ({info.width}x{info.height} each, "
                           f"{_mib(info.total_bytes)} decoded); Uprez upscales one: the first would be used, "
                           f"{how}")
    index = 0 if frame is None else frame - 1
    if not 0 <= index < info.frames:
        raise InvalidInput(f"{name} has {info.frames} frame(s) but frame {frame} was asked for; "
                           f"use 1 to {info.frames}")
    pixels = info.width * info.height
    if pixels > max_pixels or info.frame_bytes > max_pixels * MAX_SAMPLE_BYTES:
        raise InvalidInput(f"{name} is {info.width}x{info.height} = {pixels} pixels ({_mib(info.frame_bytes)} "
                           f"decoded), over the limit of {max_pixels} pixels; crop or shrink it first")
    if pixels < 1:
        raise InvalidInput(f"{name} is empty ({info.width}x{info.height})")
    return index


def _mib(count: int) -> str:
    return f"{count / 2**20:.0f} MiB" if count >= 2**20 else f"{count} bytes"
