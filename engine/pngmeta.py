"""Metadata chunks (iCCP, pHYs, eXIf, iTXt XMP) put into an already encoded PNG, right after IHDR.

One path for the 8-bit PNGs Pillow writes and the 16-bit ones pypng writes (pypng has no iCCP or eXIf).
"""

from __future__ import annotations

import struct
import zlib

from engine.photo import PhotoMeta
from plugin.uprez_client.protocol import PNG_SIGNATURE as _SIGNATURE

_XMP_KEYWORD = b"XML:com.adobe.xmp"


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def chunks(meta: PhotoMeta) -> bytes:
    """The encoded chunks that carry `meta` (PNG 1.2 iCCP/pHYs/iTXt, PNG 3 eXIf)."""
    out = b""
    if meta.icc:
        out += _chunk(b"iCCP", b"ICC Profile\x00\x00" + zlib.compress(meta.icc))
    if meta.dpi:
        per_metre = [round(value / 0.0254) for value in meta.dpi]
        out += _chunk(b"pHYs", struct.pack(">IIB", per_metre[0], per_metre[1], 1))
    if meta.exif:
        exif = meta.exif[6:] if meta.exif.startswith(b"Exif\x00\x00") else meta.exif
        out += _chunk(b"eXIf", exif)
    if meta.xmp:
        out += _chunk(b"iTXt", _XMP_KEYWORD + b"\x00\x00\x00\x00\x00" + meta.xmp)
    return out


def with_metadata(png: bytes, meta: PhotoMeta) -> bytes:
    """`png` with `meta`'s chunks after IHDR; unchanged when there is nothing to carry."""
    extra = chunks(meta)
    if not extra:
        return png
    if not png.startswith(_SIGNATURE) or png[12:16] != b"IHDR":
        raise ValueError("not a PNG with an IHDR chunk first")
    end_of_ihdr = 8 + 8 + struct.unpack(">I", png[8:12])[0] + 4
    return png[:end_of_ihdr] + extra + png[end_of_ihdr:]
