"""What makes a photo a photo besides its pixels: orientation, ICC profile, EXIF, XMP and DPI.

Read from Pillow's `info`/`getexif()` or a tifffile page, applied (orientation) or carried to the output
(the rest). Pure functions over arrays and bytes; the file formats are engine/imagefile.py's job.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from PIL import Image

ORIENTATION = 0x0112
_EXIF_IFD = 0x8769
_SIZE_TAGS = (0x0100, 0x0101)  # ImageWidth, ImageLength in IFD0
_EXIF_SIZE_TAGS = (0xA002, 0xA003)  # PixelXDimension, PixelYDimension in the Exif IFD
_TIFF_ICC, _TIFF_XMP = 34675, 700


def pil_to_array(image: Image.Image) -> np.ndarray:
    """A Pillow image's samples as they are stored: 16-bit stays 16-bit, float stays float; other modes as RGB(A)."""
    if image.mode in ("I;16", "I;16B", "I;16L"):
        return np.asarray(image, dtype=np.uint16)
    if image.mode == "I":
        return np.clip(np.asarray(image), 0, 65535).astype(np.uint16)
    if image.mode == "F":
        return np.asarray(image, dtype=np.float32)
    if image.mode not in ("L", "LA", "RGB", "RGBA"):
        image = image.convert("RGBA" if "A" in image.getbands() or "transparency" in image.info else "RGB")
    return np.asarray(image)


@dataclass(frozen=True)
class PhotoMeta:
    """A file's profile and metadata; `orientation` is the EXIF/TIFF value (1 = upright, 2-8 = turned/flipped)."""

    icc: bytes | None = None
    exif: bytes | None = None  # as Pillow's Exif.tobytes(): b"Exif\0\0" + a TIFF structure
    xmp: bytes | None = None
    dpi: tuple[float, float] | None = None
    orientation: int = 1

    def stripped(self) -> PhotoMeta:
        """`--strip-metadata`: only the profile stays, because the pixels mean nothing without it."""
        return PhotoMeta(icc=self.icc)


def orient(array: np.ndarray, orientation: int) -> np.ndarray:
    """The pixels as a viewer shows them: EXIF orientation 1-8 undone (TIFF 6.0, tag 274)."""
    steps = {
        2: lambda a: a[:, ::-1],  # mirrored left-right
        3: lambda a: a[::-1, ::-1],  # turned 180
        4: lambda a: a[::-1],  # mirrored top-bottom
        5: lambda a: np.swapaxes(a, 0, 1),  # transposed
        6: lambda a: np.rot90(a, -1),  # stored turned 90 counter-clockwise: turn it clockwise
        7: lambda a: np.swapaxes(a[::-1, ::-1], 0, 1),  # transverse
        8: lambda a: np.rot90(a, 1),
    }
    step = steps.get(int(orientation))
    return array if step is None else np.ascontiguousarray(step(array))


def clean_exif(exif: Any) -> bytes | None:
    """EXIF bytes without the orientation (the pixels are now upright) and the pixel sizes (they changed)."""
    from PIL import Image

    if exif is None:
        return None
    if isinstance(exif, (bytes, bytearray)):
        loaded = Image.Exif()
        try:
            loaded.load(bytes(exif))
        except Exception:  # a damaged EXIF block is dropped rather than failing the job
            return None
        exif = loaded
    for tag in (ORIENTATION, *_SIZE_TAGS):
        exif.pop(tag, None)
    if _EXIF_IFD in exif:
        sub = exif.get_ifd(_EXIF_IFD)
        for tag in _EXIF_SIZE_TAGS:
            sub.pop(tag, None)
    return exif.tobytes() if len(exif) else None


def from_pillow(image: Any) -> PhotoMeta:
    """The metadata of an opened (not necessarily loaded) Pillow image."""
    info = image.info
    exif = image.getexif()
    orientation = int(exif.get(ORIENTATION, 1) or 1)
    dpi = info.get("dpi")
    xmp = info.get("xmp")
    return PhotoMeta(
        icc=info.get("icc_profile") or None,
        exif=clean_exif(exif) if len(exif) else None,
        xmp=xmp.encode("utf-8") if isinstance(xmp, str) else xmp or None,
        dpi=(float(dpi[0]), float(dpi[1])) if dpi and dpi[0] and dpi[1] else None,
        orientation=orientation if 1 <= orientation <= 8 else 1,
    )


def from_tiff_page(page: Any) -> PhotoMeta:
    """The metadata of a tifffile page: its ICC and XMP tags, resolution and orientation.

    EXIF from a TIFF's Exif IFD is not carried: tifffile reads it as a dict and cannot write it back.
    """
    tags = page.tags
    icc = tags.get(_TIFF_ICC)
    xmp = tags.get(_TIFF_XMP)
    orientation = tags.get(274)
    dpi = None
    unit = tags.get(296)
    unit_value = int(unit.value) if unit is not None else 2
    try:
        x_res, y_res = (tags[t].value for t in (282, 283))
        x_dpi, y_dpi = x_res[0] / x_res[1], y_res[0] / y_res[1]
        if unit_value in (2, 3) and x_dpi > 0 and y_dpi > 0:
            factor = 2.54 if unit_value == 3 else 1.0  # 3 = per centimetre
            dpi = (x_dpi * factor, y_dpi * factor)
    except (KeyError, TypeError, ZeroDivisionError, IndexError):
        pass
    value = int(orientation.value) if orientation is not None else 1
    return PhotoMeta(
        icc=bytes(icc.value) if icc is not None else None,
        xmp=bytes(xmp.value) if xmp is not None and isinstance(xmp.value, (bytes, bytearray)) else None,
        dpi=dpi,
        orientation=value if 1 <= value <= 8 else 1,
    )


def upright(meta: PhotoMeta) -> PhotoMeta:
    """The metadata to write with pixels that `orient` has turned upright."""
    return replace(meta, orientation=1)


def tiff_options(meta: PhotoMeta) -> dict[str, object]:
    """tifffile's write options: the ICC profile, the resolution and the XMP packet (tag 700)."""
    options: dict[str, object] = {}
    if meta.icc:
        options["iccprofile"] = meta.icc
    if meta.dpi:
        options.update(resolution=meta.dpi, resolutionunit="INCH")
    if meta.xmp:
        options["extratags"] = [(700, "B", len(meta.xmp), meta.xmp, True)]
    return options
